//! What a host agent observes of the traffic it enforces, as it ships it to the API: per-rule,
//! per-port hit counts and flow-log records, plus the per-port flow-log setting the API ships to
//! the agent in its host policy ([`crate::policy::PortPolicy::flow_log`]).
//!
//! Wire shapes (JSON, agent → API, both with the agent's key, `Authorization: APIKey …`):
//!
//! - `POST /palisade/v1/agents/{host}/rule-stats`, body [`RuleStatsReport`]: hit-count *deltas*
//!   since the agent's previous accepted report, never absolute values, so the API adds them to
//!   what it holds; a 2xx answer means the batch is counted (the agent drops it), anything else
//!   means it is not (the agent sends the same deltas, merged with newer ones, next time).
//! - `POST /palisade/v1/agents/{host}/flow-logs`, body [`FlowLogReport`]: records aggregated per
//!   flow per minute; same 2xx contract.
//!
//! Times are Unix seconds (UTC), as in an AWS flow log. Pure data: no I/O here.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rule::Direction;

/// Which packets a port's flow log records (Neutron's log `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowLogEvents {
    /// Packets the port's default drop refuses.
    Drop,
    /// New connections a rule admits (established traffic is not logged).
    Accept,
    /// Both.
    All,
}

impl FlowLogEvents {
    pub fn drops(self) -> bool {
        matches!(self, FlowLogEvents::Drop | FlowLogEvents::All)
    }

    pub fn accepts(self) -> bool {
        matches!(self, FlowLogEvents::Accept | FlowLogEvents::All)
    }
}

/// The flow-log setting of one port in a host policy: `{"events": "drop"|"accept"|"all"}`;
/// absent (or `null`) when the port does not log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowLogSetting {
    pub events: FlowLogEvents,
}

/// Body of `POST /palisade/v1/agents/{host}/rule-stats`:
/// `{"stats": [{"port_id", "rule_id", "packets", "bytes", "last_hit_at"}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RuleStatsReport {
    /// At most one entry per (port, rule); only entries with `packets > 0`.
    pub stats: Vec<RuleHits>,
}

/// New hits of one rule on one port: what the rule admitted on that port (the first packet of
/// each new connection) since the previous report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHits {
    pub port_id: Uuid,
    pub rule_id: Uuid,
    /// Packets added since the previous report (a delta, > 0).
    pub packets: u64,
    /// Bytes added since the previous report (a delta).
    pub bytes: u64,
    /// When the agent read the counters that showed these hits (Unix seconds): the hits happened
    /// in the stats interval before it. The API's `last_hit_at` is the latest of these.
    pub last_hit_at: i64,
}

/// Body of `POST /palisade/v1/agents/{host}/flow-logs`:
/// `{"records": [FlowRecord, …], "dropped_flows": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowLogReport {
    pub records: Vec<FlowRecord>,
    /// Flows the agent saw but could not hold (its cap on distinct flows per minute, or on
    /// records awaiting a send) since its previous accepted report: logged packets not in any
    /// record. 0 in normal operation.
    pub dropped_flows: u64,
}

/// What the port's policy did with a logged flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FlowAction {
    Accept,
    Reject,
}

/// One flow during one minute, as seen from one port (the fields of an AWS flow log, plus the
/// deciding rule). `src`/`dst` are the packet's own source and destination: for an `ingress`
/// record the port is the destination, for `egress` the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub port_id: Uuid,
    /// `"ingress"` or `"egress"`, from the port's point of view.
    #[serde(with = "direction_name")]
    pub direction: Direction,
    pub src_addr: IpAddr,
    /// `null` for protocols without ports (ICMP, …).
    pub src_port: Option<u16>,
    pub dst_addr: IpAddr,
    pub dst_port: Option<u16>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    /// ICMP/ICMPv6 type and code; `null` for other protocols.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Logged packets of the flow in the record's window (for accepted flows: the packets a rule
    /// admitted, i.e. the first packet of each new connection; the log is rate-limited per port,
    /// so under a flood these are the packets the limit let through).
    pub packets: u64,
    /// Their bytes (IP header included).
    pub bytes: u64,
    /// First and last logged packet, Unix seconds; both in the same minute.
    pub start: i64,
    pub end: i64,
    pub action: FlowAction,
    /// The rule that admitted the flow; `null` for the port's default drop.
    pub rule_id: Option<Uuid>,
}

mod direction_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::rule::Direction;

    pub fn serialize<S: Serializer>(direction: &Direction, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(direction.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Direction, D::Error> {
        let text = String::deserialize(deserializer)?;
        Direction::parse(&text).ok_or_else(|| D::Error::custom(format!("unknown direction {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_and_settings_have_the_documented_shape() {
        let record = FlowRecord {
            port_id: Uuid::from_u128(1),
            direction: Direction::Ingress,
            src_addr: "10.0.0.1".parse().unwrap(),
            src_port: Some(40000),
            dst_addr: "10.0.0.2".parse().unwrap(),
            dst_port: Some(22),
            protocol: 6,
            icmp_type: None,
            icmp_code: None,
            packets: 2,
            bytes: 120,
            start: 1_700_000_000,
            end: 1_700_000_030,
            action: FlowAction::Reject,
            rule_id: None,
        };
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["direction"], "ingress");
        assert_eq!(value["action"], "REJECT");
        assert_eq!(value["rule_id"], serde_json::Value::Null);
        assert_eq!(value["src_addr"], "10.0.0.1");
        assert_eq!(serde_json::from_value::<FlowRecord>(value).unwrap(), record);
        let setting: FlowLogSetting = serde_json::from_value(json!({"events": "all"})).unwrap();
        assert!(setting.events.drops() && setting.events.accepts());
        assert!(serde_json::from_value::<FlowLogSetting>(json!({"events": "some"})).is_err());
    }
}
