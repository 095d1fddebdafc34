//! Bad bodies and query strings on every write path and list query: each is a 400
//! `ValidationError` naming the offending field in `invalid_fields`, as JSON, and stores nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

enum Body {
    /// No body at all.
    None,
    /// This text, sent as `application/json` (may be malformed on purpose).
    Raw(&'static str),
    /// Generated text (long lists and strings).
    Gen(fn() -> String),
}

struct Case {
    method: &'static str,
    /// `{g}` is the existing group's id, `{r}` one of its rules' ids.
    path: &'static str,
    body: Body,
    field: &'static str,
}

/// The body of a v1 create of the group `okname` whose `security_group_rules` are this JSON text
/// (which may go on with more fields of the group).
macro_rules! v1_rules {
    ($rules:literal) => {
        concat!(r#"{"security_group": {"name": "okname", "security_group_rules": "#, $rules, "}}")
    };
}

const fn case(method: &'static str, path: &'static str, body: Body, field: &'static str) -> Case {
    Case { method, path, body, field }
}

use Body::{Gen, None as NoBody, Raw};

const V2C: &str = "/cloud/v2/security_groups/1/1";
const V2G: &str = "/cloud/v2/security_groups/1/1/{g}";
const V2R: &str = "/cloud/v2/security_groups/1/1/{g}/rules";
const V1C: &str = "/cloud/v1/securitygroups/1/1";
const V1G: &str = "/cloud/v1/securitygroups/1/1/{g}";
const V1R: &str = "/cloud/v1/securitygroups/1/1/{g}/rules";
const V1PUT: &str = "/cloud/v1/securitygrouprules/1/1/{r}";
const COPY: &str = "/cloud/v1/securitygroups/1/1/{g}/copy";
const META: &str = "/cloud/v1/securitygroups/1/1/{g}/metadata";

fn too_many_rules() -> String {
    let rules: Vec<Value> = (0..251).map(|i| json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1000 + i})).collect();
    json!({"name": "toomany", "rules": rules}).to_string()
}

fn long_rule_description() -> String {
    json!({"name": "okname", "rules": [{"direction": "egress", "description": "d".repeat(256)}]}).to_string()
}

fn long_name() -> String {
    json!({"name": "n".repeat(64)}).to_string()
}

fn long_tag_value() -> String {
    json!({"name": "okname", "tags": {"k": "v".repeat(256)}}).to_string()
}

fn too_many_changed_rules() -> String {
    let changes: Vec<Value> =
        (0..501).map(|i| json!({"action": "create", "direction": "ingress", "protocol": "tcp", "port_range_min": 1000 + i})).collect();
    json!({"changed_rules": changes}).to_string()
}

fn long_v1_rule_description() -> String {
    json!({"direction": "ingress", "description": "x".repeat(256)}).to_string()
}

fn too_many_v1_rules() -> String {
    let rules: Vec<Value> = (0..251).map(|i| json!({"direction": "ingress", "protocol": "udp", "port_range_min": 2000 + i})).collect();
    json!({"security_group": {"name": "okname", "security_group_rules": rules}}).to_string()
}

/// Issue 12: group descriptions of 100 KB were accepted and stored (Gcore allows 255).
fn huge_description() -> String {
    json!({"name": "okname", "description": "d".repeat(100_000)}).to_string()
}

fn long_description() -> String {
    json!({"name": "okname", "description": "d".repeat(256)}).to_string()
}

fn patch_huge_description() -> String {
    json!({"description": "d".repeat(100_000)}).to_string()
}

fn v1_huge_description() -> String {
    json!({"security_group": {"name": "okname", "description": "d".repeat(100_000), "security_group_rules": []}}).to_string()
}

fn patch_too_many_rules() -> String {
    let rules: Vec<Value> = (0..251).map(|i| json!({"direction": "egress", "protocol": "tcp", "port_range_min": 3000 + i})).collect();
    json!({"rules": rules}).to_string()
}

static CASES: &[Case] = &[
    // ----- v2 create -----
    case("POST", V2C, Raw(r#"{}"#), "name"),
    case("POST", V2C, Raw(r#"{"description": "no name"}"#), "name"),
    case("POST", V2C, Raw(r#"{"name": "ab"}"#), "name"),
    case("POST", V2C, Raw(r#"{"name": true}"#), "name"),
    case("POST", V2C, Raw(r#"{"name": "-starts-badly"}"#), "name"),
    case("POST", V2C, Raw(r#"{"name": "ends-badly-"}"#), "name"),
    case("POST", V2C, Gen(long_name), "name"),
    case("POST", V2C, Raw(r#"{"name": "okname", "description": 5}"#), "description"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": {}}"#), "rules"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": null}"#), "rules"),
    case("POST", V2C, Gen(too_many_rules), "rules"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{}]}"#), "rules.0.direction"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": ["egress"]}"#), "rules.0"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "sideways"}]}"#), "rules.0.direction"),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "egress"}, {"direction": "ingress", "protocol": "bad_protocol_name"}]}"#),
        "rules.1.protocol",
    ),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": 256}]}"#), "rules.0.protocol"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "ethertype": "IPv5"}]}"#), "rules.0.ethertype"),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 70000}]}"#),
        "rules.0.port_range_min",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": -16, "port_range_max": 80}]}"#),
        "rules.0.port_range_min",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_max": "abc"}]}"#),
        "rules.0.port_range_max",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 1.5}]}"#),
        "rules.0.port_range_min",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "remote_ip_prefix": "192.168.1.1/33"}]}"#),
        "rules.0.remote_ip_prefix",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "remote_ip_prefix": "192.168.1./24"}]}"#),
        "rules.0.remote_ip_prefix",
    ),
    case(
        "POST",
        V2C,
        Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "remote_group_id": "bad_group_id"}]}"#),
        "rules.0.remote_group_id",
    ),
    case("POST", V2C, Gen(long_rule_description), "rules.0.description"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": "env=prod"}"#), "tags"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"a=b": "v"}}"#), "tags.a=b"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"has space": "v"}}"#), "tags.has space"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"k": ""}}"#), "tags.k"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"k": "a\tb"}}"#), "tags.k"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"k": 1}}"#), "tags.k"),
    case("POST", V2C, Gen(long_tag_value), "tags.k"),
    case("POST", V2C, Raw(r#"[]"#), "body"),
    case("POST", V2C, Raw(r#"{"name": "#), "body"),
    case("POST", V2C, NoBody, "body"),
    case("POST", V2C, Raw(r#"null"#), "body"),
    case("POST", V2C, Gen(huge_description), "description"),
    case("POST", V2C, Gen(long_description), "description"),
    // Issue 12: `null` only where Gcore's schema allows it; enums exactly as it spells them.
    case("POST", V2C, Raw(r#"{"name": null}"#), "name"),
    case("POST", V2C, Raw(r#"{"name": "okname", "description": null}"#), "description"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": null}"#), "tags"),
    case("POST", V2C, Raw(r#"{"name": "okname", "tags": {"k": "a\u000bb"}}"#), "tags.k"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "TCP"}]}"#), "rules.0.protocol"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": 6}]}"#), "rules.0.protocol"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "protocol": "6"}]}"#), "rules.0.protocol"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "ingress", "ethertype": "IPV4"}]}"#), "rules.0.ethertype"),
    case("POST", V2C, Raw(r#"{"name": "okname", "rules": [{"direction": "Egress"}]}"#), "rules.0.direction"),
    // ----- v2 patch -----
    case("PATCH", V2G, Raw(r#"{"name": "a"}"#), "name"),
    case("PATCH", V2G, Raw(r#"{"name": "!bad", "tags": {"new": "v"}}"#), "name"),
    case("PATCH", V2G, Raw(r#"{"description": 1}"#), "description"),
    case("PATCH", V2G, Raw(r#"{"rules": "all"}"#), "rules"),
    case("PATCH", V2G, Gen(patch_too_many_rules), "rules"),
    case("PATCH", V2G, Raw(r#"{"rules": [{"direction": "egress"}, {"direction": "in"}]}"#), "rules.1.direction"),
    case("PATCH", V2G, Raw(r#"{"rules": [{"direction": "egress", "remote_ip_prefix": 10}]}"#), "rules.0.remote_ip_prefix"),
    case("PATCH", V2G, Raw(r#"{"tags": ["a"]}"#), "tags"),
    case("PATCH", V2G, Raw(r#"{"tags": {"bad key": "v"}}"#), "tags.bad key"),
    case("PATCH", V2G, Raw(r#"{"tags": {"k": " "}}"#), "tags.k"),
    case("PATCH", V2G, Raw(r#"{"name": "fine-name", "tags": {"k": 5}}"#), "tags.k"),
    case("PATCH", V2G, Raw(r#"[1]"#), "body"),
    case("PATCH", V2G, Raw(r#"{"#), "body"),
    case("PATCH", V2G, Raw(r#"null"#), "body"),
    case("PATCH", V2G, Raw(r#"{"name": null}"#), "name"),
    case("PATCH", V2G, Raw(r#"{"description": null}"#), "description"),
    case("PATCH", V2G, Raw(r#"{"rules": null}"#), "rules"),
    case("PATCH", V2G, Gen(patch_huge_description), "description"),
    case("PATCH", V2G, Raw(r#"{"rules": [{"direction": "egress", "ethertype": "ipv6"}]}"#), "rules.0.ethertype"),
    // ----- v2 rule create -----
    case("POST", V2R, Raw(r#"{}"#), "direction"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "tcp", "port_range_min": -16}"#), "port_range_min"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "tcp", "port_range_max": 65536}"#), "port_range_max"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "remote_ip_prefix": "bad_prefix"}"#), "remote_ip_prefix"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "remote_ip_prefix": "256"}"#), "remote_ip_prefix"),
    case("POST", V2R, Raw(r#"{"direction": "egress", "ethertype": "bad_ethertype"}"#), "ethertype"),
    case("POST", V2R, Raw(r#"{"direction": "egress", "protocol": -1}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "egress", "remote_group_id": 7}"#), "remote_group_id"),
    case("POST", V2R, Raw(r#"{"direction": "egress", "description": ["x"]}"#), "description"),
    case("POST", V2R, Raw(r#""ingress""#), "body"),
    case("POST", V2R, NoBody, "body"),
    case("POST", V2R, Raw(r#"null"#), "body"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "TCP"}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "Tcp"}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": 6}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "6"}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "protocol": "ANY"}"#), "protocol"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "ethertype": "IPV4"}"#), "ethertype"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "ethertype": "ipv4"}"#), "ethertype"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "ethertype": null}"#), "ethertype"),
    case("POST", V2R, Raw(r#"{"direction": "INGRESS"}"#), "direction"),
    case("POST", V2R, Raw(r#"{"direction": "ingress", "description": null}"#), "description"),
    // ----- v1 create -----
    case("POST", V1C, Raw(r#"{}"#), "security_group"),
    case("POST", V1C, Raw(r#"{"name": "flat-body"}"#), "security_group"),
    case("POST", V1C, Raw(r#"{"security_group": "x"}"#), "security_group"),
    case("POST", V1C, Raw(r#"{"security_group": {"name": "ab", "security_group_rules": []}}"#), "security_group.name"),
    case("POST", V1C, Raw(r#"{"security_group": {"security_group_rules": []}}"#), "security_group.name"),
    case("POST", V1C, Raw(v1_rules!(r#"{}"#)), "security_group.security_group_rules"),
    case("POST", V1C, Gen(too_many_v1_rules), "security_group.security_group_rules"),
    case(
        "POST",
        V1C,
        Raw(v1_rules!(r#"[{"direction": "egress", "protocol": "bogus"}]"#)),
        "security_group.security_group_rules.0.protocol",
    ),
    case("POST", V1C, Raw(v1_rules!(r#"[{"protocol": "any"}]"#)), "security_group.security_group_rules.0.direction"),
    case(
        "POST",
        V1C,
        Raw(v1_rules!(
            r#"[{"direction": "egress"}, {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}]"#
        )),
        "security_group.security_group_rules.1.port_range_min",
    ),
    case(
        "POST",
        V1C,
        Raw(r#"{"security_group": {"name": "okname", "security_group_rules": []}, "instances": ["not-a-uuid"]}"#),
        "instances.0",
    ),
    case("POST", V1C, Raw(r#"{"security_group": {"name": "okname", "security_group_rules": []}, "instances": "x"}"#), "instances"),
    case("POST", V1C, Raw(r#"{"security_group": {"name": "okname", "security_group_rules": []}, "instances": null}"#), "instances"),
    case("POST", V1C, Raw(v1_rules!(r#"null"#)), "security_group.security_group_rules"),
    case("POST", V1C, Raw(r#"{"security_group": {"name": "okname", "tags": null}}"#), "security_group.tags"),
    case("POST", V1C, Raw(r#"{"security_group": {"name": "okname", "description": null}}"#), "security_group.description"),
    case("POST", V1C, Gen(v1_huge_description), "security_group.description"),
    case("POST", V1C, Raw(v1_rules!(r#"[{"direction": "egress", "protocol": "UDP"}]"#)), "security_group.security_group_rules.0.protocol"),
    case("POST", V1C, Raw(v1_rules!(r#"[], "metadata": {"k": ""}"#)), "security_group.metadata.k"),
    case("POST", V1C, Raw(v1_rules!(r#"[], "tags": {"=": "v"}"#)), "security_group.tags.="),
    // ----- v1 patch -----
    case("PATCH", V1G, Raw(r#"{"name": "x"}"#), "name"),
    case("PATCH", V1G, Raw(r#"{"changed_rules": {}}"#), "changed_rules"),
    case("PATCH", V1G, Gen(too_many_changed_rules), "changed_rules"),
    case("PATCH", V1G, Raw(r#"{"changed_rules": [{"action": "delete"}]}"#), "changed_rules.0.security_group_rule_id"),
    case(
        "PATCH",
        V1G,
        Raw(r#"{"changed_rules": [{"action": "delete", "security_group_rule_id": "nope"}]}"#),
        "changed_rules.0.security_group_rule_id",
    ),
    case("PATCH", V1G, Raw(r#"{"changed_rules": [{"action": "create"}]}"#), "changed_rules.0.direction"),
    case("PATCH", V1G, Raw(r#"{"changed_rules": [{"action": "explode", "direction": "egress"}]}"#), "changed_rules.0.action"),
    case("PATCH", V1G, Raw(r#"{"changed_rules": [{"direction": "egress"}]}"#), "changed_rules.0.action"),
    case(
        "PATCH",
        V1G,
        Raw(
            r#"{"name": "v1-renamed", "changed_rules": [{"action": "create", "direction": "egress", "protocol": "udp"}, {"action": "create", "direction": "ingress", "protocol": "nope"}]}"#,
        ),
        "changed_rules.1.protocol",
    ),
    case(
        "PATCH",
        V1G,
        Raw(
            r#"{"changed_rules": [{"action": "create", "direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80}]}"#,
        ),
        "changed_rules.0.port_range_min",
    ),
    case("PATCH", V1G, Raw(r#"{"tags": {"k": 5}}"#), "tags.k"),
    case("PATCH", V1G, Raw(r#"{"tags": "k"}"#), "tags"),
    case("PATCH", V1G, Raw(r#"17"#), "body"),
    case("PATCH", V1G, Raw(r#"null"#), "body"),
    case("PATCH", V1G, Raw(r#"{"name": null}"#), "name"),
    case("PATCH", V1G, Raw(r#"{"changed_rules": null}"#), "changed_rules"),
    case(
        "PATCH",
        V1G,
        Raw(r#"{"changed_rules": [{"action": "create", "direction": "egress", "protocol": 17}]}"#),
        "changed_rules.0.protocol",
    ),
    case(
        "PATCH",
        V1G,
        Raw(r#"{"changed_rules": [{"action": "delete", "security_group_rule_id": null}]}"#),
        "changed_rules.0.security_group_rule_id",
    ),
    // ----- v1 rule add -----
    case("POST", V1R, Raw(r#"{"protocol": "tcp"}"#), "direction"),
    case("POST", V1R, Raw(r#"{"direction": "ingress", "remote_group_id": 123}"#), "remote_group_id"),
    case("POST", V1R, Gen(long_v1_rule_description), "description"),
    case("POST", V1R, Raw(r#"{"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}"#), "port_range_min"),
    case("POST", V1R, Raw(r#"{"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}"#), "remote_ip_prefix"),
    case(
        "POST",
        V1R,
        Raw(r#"{"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "00000000-0000-4000-8000-000000000000"}"#),
        "remote_group_id",
    ),
    case("POST", V1R, Raw(r#"null"#), "body"),
    case("POST", V1R, Raw(r#"{"direction": "ingress", "protocol": "6"}"#), "protocol"),
    case("POST", V1R, Raw(r#"{"direction": "ingress", "protocol": "icmpv6", "ethertype": "IPv6"}"#), "protocol"),
    // ----- v1 rule PUT -----
    case("PUT", V1PUT, Raw(r#"{}"#), "direction"),
    case("PUT", V1PUT, Raw(r#"{"direction": "ingress", "security_group_id": "nope"}"#), "security_group_id"),
    case(
        "PUT",
        V1PUT,
        Raw(r#"{"direction": "ingress", "security_group_id": "00000000-0000-4000-8000-000000000000"}"#),
        "security_group_id",
    ),
    case("PUT", V1PUT, Raw(r#"{"direction": "ingress", "protocol": "tcp", "port_range_max": 65536}"#), "port_range_max"),
    case("PUT", V1PUT, Raw(r#"{"direction": "ingress", "protocol": "gre", "port_range_min": 5}"#), "port_range_min"),
    case("PUT", V1PUT, Raw(r#"{"direction": "up"}"#), "direction"),
    case("PUT", V1PUT, Raw(r#"{"direction": "ingress", "protocol": "TCP"}"#), "protocol"),
    case("PUT", V1PUT, Raw(r#"{"direction": "ingress", "ethertype": "IPV6"}"#), "ethertype"),
    // ----- copy -----
    case("POST", COPY, Raw(r#"{}"#), "name"),
    case("POST", COPY, Raw(r#"{"name": "a"}"#), "name"),
    case("POST", COPY, Raw(r#"{"name": null}"#), "name"),
    case("POST", COPY, NoBody, "body"),
    // ----- metadata -----
    case("POST", META, Raw(r#"{"k": ""}"#), "body.k"),
    case("POST", META, Raw(r#"[]"#), "body"),
    case("POST", META, Raw(r#"{"k": null}"#), "body.k"),
    case("PUT", META, Raw(r#"{"bad key": "v"}"#), "body.bad key"),
    case("PUT", META, Raw(r#""k=v""#), "body"),
    case("GET", "/cloud/v1/securitygroups/1/1/{g}/metadata_item", NoBody, "key"),
    case("DELETE", "/cloud/v1/securitygroups/1/1/{g}/metadata_item", NoBody, "key"),
    // ----- tasks list query -----
    case("GET", "/cloud/v1/tasks?limit=0", NoBody, "limit"),
    case("GET", "/cloud/v1/tasks?limit=1001", NoBody, "limit"),
    case("GET", "/cloud/v1/tasks?limit=abc", NoBody, "limit"),
    case("GET", "/cloud/v1/tasks?offset=-1", NoBody, "offset"),
    case("GET", "/cloud/v1/tasks?state=DONE", NoBody, "state"),
    case("GET", "/cloud/v1/tasks?state=FINISHED&state=finished", NoBody, "state"),
    case("GET", "/cloud/v1/tasks?order_by=up", NoBody, "order_by"),
    case("GET", "/cloud/v1/tasks?sorting=sideways", NoBody, "sorting"),
    case("GET", "/cloud/v1/tasks?from_timestamp=yesterday", NoBody, "from_timestamp"),
    case("GET", "/cloud/v1/tasks?to_timestamp=2020-13-01", NoBody, "to_timestamp"),
    case("GET", "/cloud/v1/tasks?from_timestamp=2020-01-01T25:00:00", NoBody, "from_timestamp"),
    case("GET", "/cloud/v1/tasks?project_id=x", NoBody, "project_id"),
    case("GET", "/cloud/v1/tasks?region_id=1.5", NoBody, "region_id"),
    case("GET", "/cloud/v1/tasks?is_acknowledged=maybe", NoBody, "is_acknowledged"),
    case("GET", "/cloud/v1/tasks/1/1/active?limit=1001", NoBody, "limit"),
    // ----- acknowledgements -----
    case("POST", "/cloud/v1/tasks/acknowledge_all?project_id=abc", NoBody, "project_id"),
    case("POST", "/cloud/v1/tasks/acknowledge_all?region_id=", NoBody, "region_id"),
    case("POST", "/cloud/v1/tasks/acknowledge", Raw(r#"{"task_ids": "all"}"#), "task_ids"),
    case("POST", "/cloud/v1/tasks/acknowledge", Raw(r#"{"task_ids": [1]}"#), "task_ids"),
    case("POST", "/cloud/v1/tasks/acknowledge?project_id=p", Raw(r#"{"task_ids": null}"#), "project_id"),
    case("POST", "/cloud/v1/tasks/acknowledge", Raw(r#"null"#), "body"),
    // ----- instance bindings -----
    case("POST", "/cloud/v1/instances/1/1/6f1b4a4e-0000-4000-8000-000000000001/addsecuritygroup", Raw(r#"{"name": null}"#), "name"),
    case(
        "POST",
        "/cloud/v1/instances/1/1/6f1b4a4e-0000-4000-8000-000000000001/delsecuritygroup",
        Raw(r#"{"ports_security_group_names": null}"#),
        "ports_security_group_names",
    ),
    // ----- group list query -----
    case("GET", "/cloud/v1/securitygroups/1/1?limit=0", NoBody, "limit"),
    case("GET", "/cloud/v1/securitygroups/1/1?limit=1001", NoBody, "limit"),
    case("GET", "/cloud/v1/securitygroups/1/1?limit=abc", NoBody, "limit"),
    case("GET", "/cloud/v1/securitygroups/1/1?offset=-1", NoBody, "offset"),
    case("GET", "/cloud/v1/securitygroups/1/1?offset=1e3", NoBody, "offset"),
    case("GET", "/cloud/v1/securitygroups/1/1?tag_key_value=tag_key_value", NoBody, "tag_key_value"),
    case("GET", "/cloud/v1/securitygroups/1/1?tag_key_value=%7B%22k%22%3A1%7D", NoBody, "tag_key_value"),
    case("GET", "/cloud/v1/securitygroups/1/1?tag_key_value=%5B%22k%22%5D", NoBody, "tag_key_value"),
    case("GET", "/cloud/v1/securitygroups/1/1?metadata_kv=%7Bbroken", NoBody, "metadata_kv"),
];

#[tokio::test]
async fn every_bad_input_is_a_400_that_names_the_field_and_stores_nothing() {
    assert!(CASES.len() >= 40, "the table has {} cases", CASES.len());
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "target", "tags": {"env": "prod"}, "rules": [
            {"direction": "egress"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
        ]}))
        .await;
    let gid = id_of(&group);
    let rid = rule_ids(&group)[1].clone();
    let before = app.snapshot().await;
    assert_eq!(before["groups"]["count"], 1);
    assert_eq!(before["tasks"]["count"], 1);

    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let path = case.path.replace("{g}", &gid).replace("{r}", &rid);
        let method = Method::from_bytes(case.method.as_bytes()).unwrap();
        let label = format!("#{i} {} {path} -> {}", case.method, case.field);
        let resp = match &case.body {
            Body::None => app.call(method, &path, None).await,
            Body::Raw(text) => app.call_raw(method, &path, text).await,
            Body::Gen(make) => app.call_raw(method, &path, &make()).await,
        };
        let outcome = std::panic::catch_unwind(|| {
            resp.expect_invalid(case.field);
        });
        if outcome.is_err() {
            failures.push(format!("{label}: got {} {}", resp.status, truncate(&resp.text)));
            continue;
        }
        let after = app.snapshot().await;
        if after != before {
            failures.push(format!("{label}: the request changed stored state"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    assert_eq!(app.snapshot().await, before);
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The same paths accept a good request, so the 400s above are about the bodies, not the paths.
#[tokio::test]
async fn the_table_paths_accept_good_input() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "target"})).await;
    let gid = id_of(&group);
    let rid = rule_ids(&group)[0].clone();
    let p = |t: &str| t.replace("{g}", &gid).replace("{r}", &rid);
    app.post_json(V2C, &json!({"name": "okname"})).await.expect(200);
    app.patch_json(&p(V2G), &json!({"name": "fine-name"})).await.expect(200);
    app.post_json(&p(V2R), &json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22})).await.expect(200);
    app.post_json(V1C, &json!({"security_group": {"name": "okname", "security_group_rules": []}, "instances": []})).await.expect(200);
    app.patch_json(&p(V1G), &json!({"changed_rules": [{"action": "create", "direction": "ingress", "protocol": "udp"}]})).await.expect(200);
    app.post_json(&p(V1R), &json!({"direction": "ingress", "protocol": "icmp"})).await.expect(200);
    app.put_json(&p(V1PUT), &json!({"direction": "ingress", "protocol": "gre"})).await.expect(200);
    app.post_json(&p(COPY), &json!({"name": "copy-name"})).await.expect(200);
    app.post_json(&p(META), &json!({"k": "v"})).await.expect(204);
    app.put_json(&p(META), &json!({"k": "w"})).await.expect(204);
    app.get(&p("/cloud/v1/securitygroups/1/1/{g}/metadata_item?key=k")).await.expect(200);
    app.get("/cloud/v1/tasks?limit=1000&offset=0&state=FINISHED&state=ERROR&order_by=asc&sorting=desc&from_timestamp=2020-01-01&to_timestamp=2999-01-01T00:00:00Z&project_id=1&region_id=1&is_acknowledged=false").await.expect(200);
    app.post_empty("/cloud/v1/tasks/acknowledge_all?project_id=1&region_id=1").await.expect(204);
    app.get(&format!("/cloud/v1/securitygroups/1/1?limit=1000&offset=0&tag_key_value={}", crate::groups::url_encode(r#"{"k":"w"}"#)))
        .await
        .expect(200);
}
