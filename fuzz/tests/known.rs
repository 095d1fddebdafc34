//! Open findings: reproductions of bugs the fuzzers found that are not fixed yet (docs/fuzzing.md,
//! "Findings"). Ignored, so CI stays green; run them with
//! `cargo test --no-default-features --test known -- --ignored`. When one passes, drop its
//! `#[ignore]` (and the work-around in `src/generate.rs` it names).

use palisade_core::policy::{HostPolicy, compile};
use palisade_fuzz::nft::{BridgeLayout, Layout, Placement, render};
use uuid::Uuid;

/// A bridge member (uplink) or an unregistered device whose name holds `"`: the kernel allows the
/// name, nft cannot quote it, so the rendered tables do not load and the agent applies nothing.
#[test]
#[ignore = "open finding: device names with a quote (crates/dataplane: nft.rs / host.rs)"]
fn a_quote_in_a_device_name_does_not_break_the_tables() {
    let group = Uuid::from_u128(1);
    // The policy as the agent receives it from the API.
    let policy: HostPolicy = serde_json::from_value(serde_json::json!({
        "host": "h1",
        "revision": 1,
        "ports": [{"id": Uuid::from_u128(10), "instance_id": Uuid::from_u128(11), "device": "tap0",
            "mac_address": "02:00:00:00:00:01", "fixed_ips": ["10.0.0.5"], "security_group_ids": [group]}],
        "security_groups": [{"id": group, "rules": []}],
        "remote_groups": [],
    }))
    .unwrap();
    let host = compile(&policy).unwrap();
    let mut layout = Layout::routed("tap");
    layout.placements.insert("tap0".into(), Placement::Bridged { bridge: "br0".into(), id: 1 });
    layout.bridges.insert("br0".into(), BridgeLayout { zone: 1, uplinks: ["vx\"0".to_string()].into() });
    layout.unregistered.insert("tap\"9".into());
    palisade_fuzz::render::balanced(&render(&host, &layout).full_script());
}
