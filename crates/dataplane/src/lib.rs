//! The data plane: turns the policy of the ports on one host into one nftables table
//! (`table inet palisade`), applies it atomically, updates it incrementally, deletes the conntrack
//! entries of revoked rules, and reports the applied revision.
//!
//! It reads the API (never the database): [`agent`] long-polls the host's policy, [`nft`] renders
//! and diffs rulesets, [`apply`] runs `nft -f` and `conntrack -D`. The policy IR and its compiler
//! live in `palisade_core::policy`, shared with the verdict engine.

pub mod agent;
pub mod apply;
pub mod nft;
