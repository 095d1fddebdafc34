//! Palisade's domain: security groups, rules and their parts, parsed from the wire into types that
//! cannot hold invalid values, normalised the way Neutron does, compared by Neutron's rule identity,
//! and diffed for a desired-state PATCH.
//!
//! This crate owns the rules of the domain and nothing else: no I/O, no async, no storage, no HTTP.
//! Everything here is a pure function of its inputs, so it is tested with proptest and benchmarked
//! with criterion directly.

pub mod analysis;
pub mod cidr;
pub mod diff;
pub mod error;
pub mod group;
pub mod input;
pub mod observe;
pub mod policy;
pub mod port;
pub mod protocol;
pub mod quota;
pub mod rule;
pub mod tags;
pub mod time;
pub mod verdict;

pub use cidr::Cidr;
pub use error::{FieldErrors, RuleError};
pub use protocol::Protocol;
pub use rule::{Direction, Ethertype, Rule, RuleDraft, RuleKey, RuleSpec};
pub use tags::{Tag, TagPatch};
pub use time::UnixMs;
