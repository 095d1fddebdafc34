//! The data plane: turns the policy of every port on one host — whatever the client, routed or
//! bridged — into nftables tables (`inet palisade`, `bridge palisade`, `arp palisade`), applies
//! them atomically, updates them incrementally, reconciles connection tracking with the policy,
//! and reports the applied revision.
//!
//! It reads the API (never the database): [`agent`] long-polls the host's policy, [`host`] finds
//! how each port device is attached, [`nft`] renders and diffs rulesets, [`apply`] runs `nft -f`
//! and `conntrack`. What the tables observe goes back to the API: [`stats`] reads the per-port
//! rule hit counts and turns them into deltas, [`flowlog`] reads the logged packets over netlink
//! and aggregates them into flow records. The policy IR and its compiler live in `palisade_core::policy`, shared with
//! the verdict engine.

pub mod agent;
pub mod apply;
pub mod flowlog;
pub mod host;
pub mod nft;
pub mod stats;
