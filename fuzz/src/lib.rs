//! Palisade's fuzz targets as plain functions. Each takes the fuzzer's bytes, drives one parser or
//! algorithm of `palisade-core` (or the nftables renderer of `palisade-dataplane`) and asserts its
//! invariants: a panic is a finding. The libFuzzer entry points in `fuzz_targets/` call them;
//! `tests/replay.rs` feeds every committed corpus and regression file through them on a plain
//! stable build. With `PALISADE_FUZZ_NFT_OUT` set, the `render` target also writes the nftables
//! scripts of each input it runs there, for `scripts/fuzz.sh` to check with `nft` in a namespace.
//!
//! Pure code only: no I/O, no async. The renderer is compiled in from its source file
//! (`crates/dataplane/src/nft.rs` depends on nothing but `palisade-core` and `uuid`), so the fuzz
//! build does not instrument tokio, hyper and rustls that the rest of the data plane needs.

pub mod bodies;
pub mod diff;
pub mod encode;
pub mod generate;
pub mod render;
pub mod rule;
pub mod scalars;
pub mod tags;

/// The renderer under test, exactly as the agent builds it.
#[path = "../../crates/dataplane/src/nft.rs"]
#[allow(dead_code)]
pub mod nft;

/// A target's entry point: the fuzzer's bytes in, a panic for a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz_targets/` binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("bodies", bodies::run),
    ("rule", rule::run),
    ("scalars", scalars::run),
    ("tags", tags::run),
    ("diff", diff::run),
    ("render", render::run),
];

/// Every field a schema error names is non-empty (a path, or `body`) with at least one non-empty
/// reason. (A path may end in `.`: the empty tag key of `{"tags": {"": "v"}}` is `tags.`.)
pub fn check_field_errors(errors: &palisade_core::FieldErrors) {
    assert!(!errors.is_empty(), "an Err without any field error");
    for (field, reasons) in &errors.0 {
        assert!(!field.is_empty() && !field.starts_with('.'), "bad field path {field:?}");
        assert!(!reasons.is_empty() && reasons.iter().all(|r| !r.is_empty()), "field {field:?} without a reason");
    }
}
