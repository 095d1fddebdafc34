//! Target `render`: a host policy as the API ships it (`core::policy::HostPolicy`), compiled
//! (`core::policy::compile`), laid out on the host's devices ([`crate::generate::layout`], as
//! `dataplane::host::plan` does), rendered as the three tables (`dataplane::nft::render`) and
//! diffed against the next revision (`Rendered::diff_script`).
//!
//! Invariants here: the policy survives its JSON wire form; compiling and rendering are
//! deterministic; every compiled rule of a bound group becomes one counted statement carrying its
//! id; every enforced port is dispatched; every jump and every `@set` a table uses names an
//! object of that table; quotes pair up and braces balance; a ruleset diffed against itself is no
//! transaction, and against a different one is one.
//!
//! That `nft` accepts the scripts is checked outside the fuzz loop: with `PALISADE_FUZZ_NFT_OUT`
//! set to a directory, each input's scripts are written there as `<hash>.{old,new,diff}.nft`
//! (run the target over a corpus with `-runs=0`), and `scripts/fuzz.sh` runs `nft -c -f` on them
//! in a network namespace of its own, applies `old` then `diff`, and compares the tables with
//! those `new` loads.

use std::collections::BTreeSet;

use arbitrary::Unstructured;
use palisade_core::policy::{CompiledHost, HostPolicy, compile};
use palisade_core::rule::Direction;

use crate::generate;
use crate::nft::{Layout, Placement, Rendered, group_chain, render};

/// Two consecutive revisions of a host: each policy with the layout it is rendered with (`None`
/// where the policy does not compile).
pub struct Revisions {
    pub old: HostPolicy,
    pub new: HostPolicy,
    pub old_rendered: Option<Rendered>,
    pub new_rendered: Option<Rendered>,
}

pub fn input(data: &[u8]) -> arbitrary::Result<Revisions> {
    let mut u = Unstructured::new(data);
    let old = generate::policy(&mut u)?;
    let new = generate::edit(&mut u, &old)?;
    let rendered = |policy: &HostPolicy, u: &mut Unstructured| -> arbitrary::Result<Option<(CompiledHost, Layout, Rendered)>> {
        let Ok(host) = compile(policy) else { return Ok(None) };
        let layout = generate::layout(u, &host)?;
        let r = render(&host, &layout);
        Ok(Some((host, layout, r)))
    };
    let old_r = rendered(&old, &mut u)?;
    let new_r = rendered(&new, &mut u)?;
    Ok(Revisions { old, new, old_rendered: old_r.map(|(_, _, r)| r), new_rendered: new_r.map(|(_, _, r)| r) })
}

pub fn run(data: &[u8]) {
    if let Some(dir) = dump_dir() {
        dump(dir, data);
    }
    let mut u = Unstructured::new(data);
    let Ok(old) = generate::policy(&mut u) else { return };
    let Ok(new) = generate::edit(&mut u, &old) else { return };
    let Ok(old_r) = check(&old, &mut u) else { return };
    let Ok(new_r) = check(&new, &mut u) else { return };
    if let (Some(old_r), Some(new_r)) = (old_r, new_r) {
        let diff = old_r.diff_script(&new_r);
        assert_eq!(diff.is_none(), old_r == new_r, "a transaction exactly when the rulesets differ");
        if let Some(script) = diff {
            assert!(script.is_empty() || script.ends_with('\n'));
            balanced(&script);
        }
    }
}

/// The nftables scripts of a fuzz input: the old tables in full, the new ones in full, and the
/// transaction from old to new (`None` where a policy does not compile or nothing changes).
pub fn scripts(data: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(r) = input(data) else { return (None, None, None) };
    let diff = match (&r.old_rendered, &r.new_rendered) {
        (Some(o), Some(n)) => o.diff_script(n),
        _ => None,
    };
    (r.old_rendered.map(|x| x.full_script()), r.new_rendered.map(|x| x.full_script()), diff)
}

fn dump_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("PALISADE_FUZZ_NFT_OUT").map(Into::into)).as_deref()
}

/// Writes the scripts of one input as `<hash>.{old,new,diff}.nft` (those that exist).
fn dump(dir: &std::path::Path, data: &[u8]) {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    let name = format!("{:016x}", hasher.finish());
    let (old, new, diff) = scripts(data);
    for (kind, script) in [("old", old), ("new", new), ("diff", diff)] {
        if let Some(script) = script {
            std::fs::write(dir.join(format!("{name}.{kind}.nft")), script).expect("writing an nft script");
        }
    }
}

fn check(policy: &HostPolicy, u: &mut Unstructured) -> arbitrary::Result<Option<Rendered>> {
    let wire = serde_json::to_vec(policy).expect("a policy serialises");
    let back: HostPolicy = serde_json::from_slice(&wire).expect("a policy deserialises");
    assert_eq!(&back, policy, "the JSON wire form changes the policy");

    let compiled = compile(policy);
    assert_eq!(compiled, compile(policy), "compile is not deterministic");
    let Ok(host) = compiled else { return Ok(None) };
    let layout = generate::layout(u, &host)?;
    let rendered = render(&host, &layout);
    assert_eq!(rendered, render(&host, &layout), "render is not deterministic");
    assert_eq!(rendered.diff_script(&rendered), None, "a ruleset differs from itself");
    references(&host, &layout, &rendered);
    balanced(&rendered.full_script());
    Ok(Some(rendered))
}

fn references(host: &CompiledHost, layout: &Layout, rendered: &Rendered) {
    for rs in &rendered.tables {
        let chains: BTreeSet<&str> = rs.chains.keys().map(String::as_str).collect();
        let named: BTreeSet<&str> = rs.sets.keys().chain(rs.maps.keys()).map(String::as_str).collect();
        let statements = rs.chains.values().flat_map(|c| c.rules.iter()).chain(rs.maps.values().flat_map(|m| m.elements.values()));
        for rule in statements {
            let words: Vec<&str> = rule.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0] == "jump" || pair[0] == "goto" {
                    assert!(chains.contains(pair[1]), "{}: jump to a missing chain {}: {rule}", rs.table, pair[1]);
                }
            }
            for word in &words {
                if let Some(set) = word.strip_prefix('@') {
                    assert!(named.contains(set), "{}: lookup in a missing set {set}: {rule}", rs.table);
                }
            }
            // One statement: no newline, and no `;` outside quotes (nft takes anything but `"` inside).
            let unquoted: String = rule.split('"').step_by(2).collect();
            assert!(!rule.contains('\n') && !unquoted.contains(';'), "a statement spans lines: {rule:?}");
        }
    }
    let inet = rendered.table(crate::nft::INET).expect("the inet table");
    let bridge = rendered.table(crate::nft::BRIDGE).expect("the bridge table");
    // Every compiled rule of a bound group is one counted statement with its id.
    let bound: BTreeSet<_> = host.ports.iter().flat_map(|p| p.groups.iter().copied()).collect();
    for id in &bound {
        let group = &host.groups[id];
        for (direction, matches) in [(Direction::Ingress, &group.ingress), (Direction::Egress, &group.egress)] {
            let chain = &inet.chains[&group_chain(*id, direction)];
            assert_eq!(chain.rules.len(), matches.len());
            for (statement, m) in chain.rules.iter().zip(matches) {
                assert!(statement.ends_with(&format!("counter accept comment \"rule {}\"", m.rule_id)), "{statement}");
            }
        }
    }
    // Every port not refused is dispatched where it is placed.
    for port in &host.ports {
        let key = format!("\"{}\"", port.device);
        if layout.refused.contains_key(&port.device) {
            assert!(!inet.maps["port_egress"].elements.contains_key(&key) && !bridge.maps["port_egress"].elements.contains_key(&key));
            continue;
        }
        match layout.placement(&port.device) {
            Placement::Routed => {
                assert!(inet.maps["port_egress"].elements.contains_key(&key), "routed port {key} not dispatched");
                assert!(inet.maps["port_ingress"].elements.contains_key(&key), "routed port {key} not dispatched");
            }
            Placement::Bridged { .. } => {
                assert!(bridge.maps["port_egress"].elements.contains_key(&key), "bridged port {key} not dispatched");
            }
        }
    }
    for refused in host.refused.iter().map(|r| &r.device).chain(layout.refused.keys()) {
        for rs in &rendered.tables {
            assert!(rs.sets["refused"].elements.contains(&format!("\"{refused}\"")), "{refused} not refused in {}", rs.table);
        }
    }
}

/// Quotes pair up on every line and braces balance over the script.
pub fn balanced(script: &str) {
    let mut depth: i64 = 0;
    for line in script.lines() {
        assert_eq!(line.matches('"').count() % 2, 0, "unbalanced quotes: {line}");
        let unquoted: String = line.split('"').step_by(2).collect();
        for c in unquoted.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "a brace closes nothing: {line}");
        }
    }
    assert_eq!(depth, 0, "unclosed braces");
}
