//! What agents observe of the traffic they enforce (migration 0007_observe): the records of
//! [`crate::ObserveTx`], the statements both dialects run word for word, and the row decoders.
//! Flow records keep the wire's fields ([`FlowRecord`]) with times in unix milliseconds, as every
//! stored time here.

use std::net::IpAddr;

use palisade_core::Direction;
use palisade_core::observe::{FlowAction, FlowLogEvents, FlowRecord};
use uuid::Uuid;

use crate::StoreResult;
use crate::rows::{Columns, bad_value};

/// The accumulated hits of one rule on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHitsRecord {
    pub rule_id: Uuid,
    pub port_id: Uuid,
    /// The port's client (whose counts these are).
    pub client_id: i64,
    pub packets: i64,
    pub bytes: i64,
    pub last_hit_ms: i64,
}

/// What a flow-log setting is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowLogTarget {
    Port(Uuid),
    Group(Uuid),
}

impl FlowLogTarget {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            FlowLogTarget::Port(_) => "port",
            FlowLogTarget::Group(_) => "group",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            FlowLogTarget::Port(id) | FlowLogTarget::Group(id) => id,
        }
    }
}

/// A stored flow record: the agent's record with its client and its position (grows with every
/// record; the newest has the highest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlow {
    pub id: i64,
    pub client_id: i64,
    /// `start` and `end` in unix milliseconds.
    pub record: FlowRecord,
}

/// Which flow records a query wants; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct FlowLogFilter {
    pub client_id: Option<i64>,
    /// Records of these ports only (an empty list matches nothing).
    pub port_ids: Option<Vec<Uuid>>,
    /// Records whose minute started at or after / at or before these times (ms).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub action: Option<FlowAction>,
    pub limit: u32,
}

pub(crate) fn events_text(events: FlowLogEvents) -> &'static str {
    match events {
        FlowLogEvents::Drop => "drop",
        FlowLogEvents::Accept => "accept",
        FlowLogEvents::All => "all",
    }
}

pub(crate) fn action_text(action: FlowAction) -> &'static str {
    match action {
        FlowAction::Accept => "ACCEPT",
        FlowAction::Reject => "REJECT",
    }
}

fn parse_events(text: &str) -> StoreResult<FlowLogEvents> {
    match text {
        "drop" => Ok(FlowLogEvents::Drop),
        "accept" => Ok(FlowLogEvents::Accept),
        "all" => Ok(FlowLogEvents::All),
        other => Err(bad_value("flow-log events", other)),
    }
}

pub(crate) const RULE_HITS_COLUMNS: &str = "rule_id, port_id, client_id, packets, bytes, last_hit_ms";

/// Adds one report's deltas; a rule deleted since the agent read its counters has nothing to
/// add to (the row would outlive it), so only existing rules count.
pub(crate) const ADD_RULE_HITS: &str = "INSERT INTO rule_hits (rule_id, port_id, client_id, packets, bytes, last_hit_ms)
     SELECT id, $2, $3, $4, $5, $6 FROM security_group_rules WHERE id = $1
     ON CONFLICT (rule_id, port_id) DO UPDATE SET packets = rule_hits.packets + excluded.packets,
         bytes = rule_hits.bytes + excluded.bytes,
         last_hit_ms = CASE WHEN excluded.last_hit_ms > rule_hits.last_hit_ms THEN excluded.last_hit_ms ELSE rule_hits.last_hit_ms END";

pub(crate) const UPSERT_FLOW_LOG_SETTING: &str =
    "INSERT INTO flow_log_settings (kind, target_id, client_id, events) VALUES ($1, $2, $3, $4)
     ON CONFLICT (kind, target_id) DO UPDATE SET events = excluded.events, client_id = excluded.client_id";
pub(crate) const DELETE_FLOW_LOG_SETTING: &str = "DELETE FROM flow_log_settings WHERE kind = $1 AND target_id = $2";
pub(crate) const GET_FLOW_LOG_SETTING: &str = "SELECT events FROM flow_log_settings WHERE kind = $1 AND target_id = $2";

pub(crate) const FLOW_COLUMNS: &str = "id, client_id, port_id, direction, src_addr, src_port, dst_addr, dst_port, protocol, icmp_type, icmp_code, packets, bytes, start_ms, end_ms, action, rule_id";
pub(crate) const INSERT_FLOW: &str = "INSERT INTO flow_logs (client_id, port_id, direction, src_addr, src_port, dst_addr, dst_port, protocol, icmp_type, icmp_code, packets, bytes, start_ms, end_ms, action, rule_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
/// Deletes the client's records beyond its newest `$2` (the cap: the oldest go first).
pub(crate) const TRIM_FLOWS: &str =
    "DELETE FROM flow_logs WHERE id IN (SELECT id FROM flow_logs WHERE client_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3)";
/// Deletes up to `$2` records of minutes that started before `$1`, oldest first.
pub(crate) const PRUNE_FLOWS: &str =
    "DELETE FROM flow_logs WHERE id IN (SELECT id FROM flow_logs WHERE start_ms < $1 ORDER BY id LIMIT $2)";

pub(crate) fn rule_hits_from_row(row: &impl Columns) -> StoreResult<RuleHitsRecord> {
    Ok(RuleHitsRecord {
        rule_id: row.uuid(0)?,
        port_id: row.uuid(1)?,
        client_id: row.column(2)?,
        packets: row.column(3)?,
        bytes: row.column(4)?,
        last_hit_ms: row.column(5)?,
    })
}

pub(crate) fn setting_from_row(row: &impl Columns) -> StoreResult<(FlowLogTarget, FlowLogEvents)> {
    let kind: String = row.column(0)?;
    let id = row.uuid(1)?;
    let target = match kind.as_str() {
        "port" => FlowLogTarget::Port(id),
        "group" => FlowLogTarget::Group(id),
        other => return Err(bad_value("flow-log kind", other)),
    };
    Ok((target, parse_events(&row.column::<String>(2)?)?))
}

pub(crate) fn events_from_row(row: &impl Columns) -> StoreResult<FlowLogEvents> {
    parse_events(&row.column::<String>(0)?)
}

fn small<T: TryFrom<i32>>(value: Option<i32>, what: &str) -> StoreResult<Option<T>> {
    value.map(|v| T::try_from(v).map_err(|_| bad_value(what, &v.to_string()))).transpose()
}

fn address(row: &impl Columns, index: usize) -> StoreResult<IpAddr> {
    let text: String = row.column(index)?;
    text.parse().map_err(|_| bad_value("address", &text))
}

pub(crate) fn flow_from_row(row: &impl Columns) -> StoreResult<StoredFlow> {
    let direction: String = row.column(3)?;
    let action: String = row.column(15)?;
    let rule_id: Option<String> = row.column(16)?;
    let protocol: i32 = row.column(8)?;
    let record = FlowRecord {
        port_id: row.uuid(2)?,
        direction: Direction::parse(&direction).ok_or_else(|| bad_value("direction", &direction))?,
        src_addr: address(row, 4)?,
        src_port: small(row.column(5)?, "port")?,
        dst_addr: address(row, 6)?,
        dst_port: small(row.column(7)?, "port")?,
        protocol: u8::try_from(protocol).map_err(|_| bad_value("protocol", &protocol.to_string()))?,
        icmp_type: small(row.column(9)?, "icmp type")?,
        icmp_code: small(row.column(10)?, "icmp code")?,
        packets: row.column::<i64>(11)?.max(0) as u64,
        bytes: row.column::<i64>(12)?.max(0) as u64,
        start: row.column(13)?,
        end: row.column(14)?,
        action: match action.as_str() {
            "ACCEPT" => FlowAction::Accept,
            "REJECT" => FlowAction::Reject,
            other => return Err(bad_value("flow action", other)),
        },
        rule_id: rule_id.as_deref().map(crate::rows::parse_uuid).transpose()?,
    };
    Ok(StoredFlow { id: row.column(0)?, client_id: row.column(1)?, record })
}

/// The columns of a record to insert, in [`INSERT_FLOW`]'s order, typed for both drivers
/// (INTEGER columns as `i32`, BIGINT as `i64`).
pub(crate) struct FlowParams {
    pub client_id: i64,
    pub port_id: String,
    pub direction: &'static str,
    pub src_addr: String,
    pub src_port: Option<i32>,
    pub dst_addr: String,
    pub dst_port: Option<i32>,
    pub protocol: i32,
    pub icmp_type: Option<i32>,
    pub icmp_code: Option<i32>,
    pub packets: i64,
    pub bytes: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub action: &'static str,
    pub rule_id: Option<String>,
}

impl FlowParams {
    /// `record` with times already in milliseconds.
    pub(crate) fn new(client_id: i64, record: &FlowRecord) -> FlowParams {
        let saturating = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        FlowParams {
            client_id,
            port_id: crate::rows::id_text(record.port_id),
            direction: record.direction.as_str(),
            src_addr: record.src_addr.to_string(),
            src_port: record.src_port.map(i32::from),
            dst_addr: record.dst_addr.to_string(),
            dst_port: record.dst_port.map(i32::from),
            protocol: i32::from(record.protocol),
            icmp_type: record.icmp_type.map(i32::from),
            icmp_code: record.icmp_code.map(i32::from),
            packets: saturating(record.packets),
            bytes: saturating(record.bytes),
            start_ms: record.start,
            end_ms: record.end,
            action: action_text(record.action),
            rule_id: record.rule_id.map(crate::rows::id_text),
        }
    }
}
