//! The two timestamp formats of the contract (§2), RFC 3339 for audit events, and the ISO-8601
//! parser for time filters. Group and rule times: `YYYY-MM-DDTHH:MM:SS+0000`. Task times: naive
//! UTC `YYYY-MM-DDTHH:MM:SS`. Audit times: `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use palisade_core::UnixMs;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// What clients send as a time filter: a date, optionally a time (`T`, `t` or a space between)
/// with optional fractional seconds and an optional zone (`Z`, `z`, `+HH:MM` or `+HHMM`).
const ISO8601: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year]-[month]-[day][optional [[first [T] [t] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]\
     [optional [[first [Z] [z] [[offset_hour sign:mandatory][optional [:]][offset_minute]]]]]]]"
);

/// The instant of `at`; instants beyond the years ±9999 (which no clock or parser here yields)
/// saturate at the nearest representable one.
fn utc(at: UnixMs) -> OffsetDateTime {
    let nanos = i128::from(at.0) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        let bound = if at.0 < 0 { PrimitiveDateTime::MIN } else { PrimitiveDateTime::MAX };
        bound.assume_utc()
    })
}

/// What follows the seconds.
#[derive(Clone, Copy)]
enum Tail {
    None,
    Zone,
    MillisZ,
}

/// `YYYY-MM-DDTHH:MM:SS` and the tail, written digit by digit from the `time` crate's calendar
/// fields: every group and rule in a response carries two of these, and a format description is
/// interpreted item by item on each call (measured: a few percent of a GET of a group).
fn render(at: UnixMs, tail: Tail) -> String {
    let t = utc(at);
    let mut out = String::with_capacity(29);
    let year = t.year();
    if year < 0 {
        out.push('-');
    }
    digits(&mut out, year.unsigned_abs(), 4);
    out.push('-');
    digits(&mut out, u8::from(t.month()).into(), 2);
    out.push('-');
    digits(&mut out, t.day().into(), 2);
    out.push('T');
    digits(&mut out, t.hour().into(), 2);
    out.push(':');
    digits(&mut out, t.minute().into(), 2);
    out.push(':');
    digits(&mut out, t.second().into(), 2);
    match tail {
        Tail::None => {}
        Tail::Zone => out.push_str("+0000"),
        Tail::MillisZ => {
            out.push('.');
            digits(&mut out, t.millisecond().into(), 3);
            out.push('Z');
        }
    }
    out
}

/// `value` in decimal, zero-padded to `width` digits (every field here fits its width: years
/// saturate at 9999).
fn digits(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width - 1);
    while divisor > 0 {
        out.push(char::from(b'0' + ((value / divisor) % 10) as u8));
        divisor /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (task times).
pub fn naive(at: UnixMs) -> String {
    render(at, Tail::None)
}

/// `YYYY-MM-DDTHH:MM:SS+0000` (group, rule, port and agent times).
pub fn with_zone(at: UnixMs) -> String {
    render(at, Tail::Zone)
}

/// RFC 3339 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ` (audit event times).
pub fn rfc3339(at: UnixMs) -> String {
    render(at, Tail::MillisZ)
}

/// An ISO-8601 date or date-time (see [`ISO8601`]; no zone means UTC, no time means midnight),
/// to the millisecond (further digits are cut off).
pub fn parse_iso8601(text: &str) -> Option<UnixMs> {
    // `[year]` also reads a signed year (`+2020`); the contract's years are four bare digits.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut parsed = Parsed::new();
    let rest = parsed.parse_items(text.as_bytes(), ISO8601).ok()?;
    if !rest.is_empty() {
        return None;
    }
    // A leap second (`:60`) is the first second of the next minute.
    let leap = parsed.second() == Some(60);
    if leap {
        parsed.set_second(59)?;
    }
    let date = Date::try_from(parsed).ok()?;
    let time = if parsed.hour_24().is_some() { Time::try_from(parsed).ok()? } else { Time::MIDNIGHT };
    let offset = if parsed.offset_hour().is_some() { UtcOffset::try_from(parsed).ok()? } else { UtcOffset::UTC };
    let mut at = PrimitiveDateTime::new(date, time).assume_offset(offset);
    if leap {
        at += Duration::SECOND;
    }
    Some(UnixMs(i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(naive(UnixMs(0)), "1970-01-01T00:00:00");
        assert_eq!(with_zone(UnixMs(1_561_000_000_999)), "2019-06-20T03:06:40+0000");
        assert_eq!(naive(UnixMs(951_782_400_000)), "2000-02-29T00:00:00");
        assert_eq!(rfc3339(UnixMs(1_561_000_000_009)), "2019-06-20T03:06:40.009Z");
        assert_eq!(rfc3339(UnixMs(1_561_000_000_000)), "2019-06-20T03:06:40.000Z");
        assert_eq!(parse_iso8601(&rfc3339(UnixMs(1_561_000_000_999))), Some(UnixMs(1_561_000_000_999)));
        // Before 1970 the second is still the one the instant falls in.
        assert_eq!(rfc3339(UnixMs(-1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(naive(UnixMs(-86_400_000 * 365)), "1969-01-01T00:00:00");
    }

    /// The digits written by hand equal the `time` crate's own formatting, from year 1 to 9999.
    #[test]
    fn formats_agree_with_the_time_crates_formatter() {
        let naive_format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let audit_format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let (first, last) = (-62_135_596_800_000_i64, 253_402_300_799_999_i64);
        let mut at = first;
        while at <= last {
            let t = utc(UnixMs(at));
            assert_eq!(naive(UnixMs(at)), t.format(naive_format).unwrap(), "{at}");
            assert_eq!(with_zone(UnixMs(at)), format!("{}+0000", t.format(naive_format).unwrap()), "{at}");
            assert_eq!(rfc3339(UnixMs(at)), t.format(audit_format).unwrap(), "{at}");
            at += 79_199_999_987; // an odd step of some 2.5 years: months, hours and milliseconds all vary
        }
    }

    #[test]
    fn parses_what_clients_send() {
        let parse = |text| parse_iso8601(text).map(|at| at.0);
        assert_eq!(parse("2019-12-27T18:11:19.117000+00:00"), Some(1_577_470_279_117));
        assert_eq!(parse("2019-12-27T18:11:19.117Z"), Some(1_577_470_279_117));
        assert_eq!(parse("2019-12-27t18:11:19.117z"), Some(1_577_470_279_117));
        assert_eq!(parse("2019-12-27 18:11:19.1179"), Some(1_577_470_279_117));
        assert_eq!(parse("2019-12-27T20:11:19.117+0200"), Some(1_577_470_279_117));
        assert_eq!(parse("2019-12-27T17:41:19.117-00:30"), Some(1_577_470_279_117));
        assert_eq!(parse("2020-01-01T00:00:00"), Some(1_577_836_800_000));
        assert_eq!(parse("2020-01-01"), Some(1_577_836_800_000));
        assert_eq!(parse("2019-12-31T23:59:60Z"), Some(1_577_836_800_000));
        for bad in [
            "yesterday",
            "2020-13-01",
            "2020-01-01T25:00:00",
            "2020-01-01T00:00:00+1",
            "",
            "2020-01-01T",
            "2020-01-01T00:00",
            "2020-01-01T00:00:00.",
            "2020-01-01T00:00:00Zjunk",
            "+2020-01-01",
            "20200101",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        for ms in [0, 1_577_836_800_000, 4_102_444_800_000] {
            assert_eq!(parse_iso8601(&naive(UnixMs(ms))), Some(UnixMs(ms)));
        }
    }
}
