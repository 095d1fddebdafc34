//! The two timestamp formats of the contract (§2), and the ISO-8601 parser for task filters.
//! Group and rule times: `YYYY-MM-DDTHH:MM:SS+0000`. Task times: naive UTC `YYYY-MM-DDTHH:MM:SS`.

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's civil algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS` of unix milliseconds.
pub fn naive(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `YYYY-MM-DDTHH:MM:SS+0000` of unix milliseconds.
pub fn with_zone(ms: i64) -> String {
    let mut text = naive(ms);
    text.push_str("+0000");
    text
}

/// RFC 3339 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ` (audit event times).
pub fn rfc3339(ms: i64) -> String {
    format!("{}.{:03}Z", naive(ms), ms.rem_euclid(1000))
}

/// ISO-8601 date or date-time, with or without fractional seconds and zone (naive means UTC),
/// to unix milliseconds.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    ms += (hour * 3600 + minute * 60 + second) * 1000;
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let millis: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        ms += millis.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    match rest {
        "" | "Z" | "z" => Some(ms),
        zone if zone.starts_with('+') || zone.starts_with('-') => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let offset = digits[..2].parse::<i64>().ok()? * 3600 + digits[2..].parse::<i64>().ok()? * 60;
            Some(ms - sign * offset * 1000)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(naive(0), "1970-01-01T00:00:00");
        assert_eq!(with_zone(1_561_000_000_999), "2019-06-20T03:06:40+0000");
        assert_eq!(naive(951_782_400_000), "2000-02-29T00:00:00");
        assert_eq!(rfc3339(1_561_000_000_009), "2019-06-20T03:06:40.009Z");
        assert_eq!(parse_iso8601(&rfc3339(1_561_000_000_999)), Some(1_561_000_000_999));
    }

    #[test]
    fn parses_what_clients_send() {
        assert_eq!(parse_iso8601("2019-12-27T18:11:19.117000+00:00"), Some(1_577_470_279_117));
        assert_eq!(parse_iso8601("2019-12-27T18:11:19.117Z"), Some(1_577_470_279_117));
        assert_eq!(parse_iso8601("2019-12-27T20:11:19.117+0200"), Some(1_577_470_279_117));
        assert_eq!(parse_iso8601("2020-01-01T00:00:00"), Some(1_577_836_800_000));
        assert_eq!(parse_iso8601("2020-01-01"), Some(1_577_836_800_000));
        for bad in ["yesterday", "2020-13-01", "2020-01-01T25:00:00", "2020-01-01T00:00:00+1", ""] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        for ms in [0, 1_577_836_800_000, 4_102_444_800_000] {
            assert_eq!(parse_iso8601(&naive(ms)), Some(ms));
        }
    }
}
