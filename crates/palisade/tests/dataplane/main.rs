//! Data-plane tests: groups created through the API, bound to ports of instances that are network
//! namespaces on a "host" namespace, enforced by the real `palisade agent` with nftables, and
//! checked with real traffic. The netns tests need root (CI runs as root) and skip with a message
//! otherwise; the API tests of ports and instances run anywhere.

mod differential;
mod hosts;
mod lab;
mod observe;
#[path = "../../../../tests/common/server_config.rs"]
mod server_config;
mod traffic;

use std::collections::BTreeSet;

use lab::{
    AgentProcess, Api, ClientAndWeb, Lab, Server, ServerProcess, Wiring, addr, counter, egress_all, ingress, ingress_from, rule,
    rules_with_handles,
};
use reqwest::Method;
use serde_json::{Value, json};
use traffic::{ping, tcp_connect, tcp_echo_server, tcp_ok, udp_echo_server, udp_ok};

const HOST: &str = "h1";

#[test]
fn tcp_by_port_and_by_source_prefix() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[3]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, b, c) = (&lab.instances[0], &lab.instances[1], &lab.instances[2]);
        let a_prefix = format!("{}/32", a.v4);
        let web = api
            .group_with_egress("web", [ingress("IPv4", "tcp", 80), rule("ingress", "IPv4", Some("tcp"), Some(22), Some(&a_prefix), None)])
            .await;
        let clients = api.group("clients", egress_all()).await;
        api.register(a, HOST, &[clients]).await;
        api.register(b, HOST, &[clients]).await;
        api.register(c, HOST, &[web]).await;
        for port in [22, 80, 8080] {
            tcp_echo_server(&c.ns, addr(c.v4, port));
        }
        tcp_echo_server(&a.ns, addr(a.v4, 80));
        let agent = AgentProcess::spawn(&lab.dir, &api, HOST);
        api.converge(HOST).await;

        assert!(tcp_ok(&a.ns, addr(c.v4, 80)), "tcp 80 is open to everyone");
        assert!(tcp_ok(&b.ns, addr(c.v4, 80)), "tcp 80 is open to everyone");
        assert!(!tcp_ok(&a.ns, addr(c.v4, 8080)), "no rule opens 8080");
        assert!(tcp_ok(&a.ns, addr(c.v4, 22)), "tcp 22 is open to a's prefix");
        assert!(!tcp_ok(&b.ns, addr(c.v4, 22)), "b is outside the prefix of the tcp 22 rule");
        assert!(!tcp_ok(&c.ns, addr(a.v4, 80)), "the clients group has no ingress rule");

        // Per-rule counters name their rule.
        let table = lab.nft("list table inet palisade");
        let (_, group) = api.tenant.call(Method::GET, &format!("/cloud/v1/securitygroups/1/1/{web}"), None).await;
        for r in group["security_group_rules"].as_array().unwrap() {
            assert!(table.contains(&format!("accept comment \"rule {}\"", r["id"].as_str().unwrap())), "{table}");
        }

        // A v2 write with ?wait_for_agents answers once its task ran and the agent of the host of
        // the tenant's ports applied it. The global revision is not the tenant's to see: the
        // platform reads it.
        let (status, headers, body) = api
            .tenant
            .call_full(
                Method::POST,
                &format!("/cloud/v2/security_groups/1/1/{web}/rules?wait_for_agents=10"),
                Some(ingress("IPv4", "tcp", 8080)),
            )
            .await;
        Api::expect(status, 200, &body);
        assert_eq!(headers["x-agents-applied"], HOST, "{headers:?}");
        assert_eq!(headers["x-agents-pending"], "", "{headers:?}");
        assert!(headers.get("x-policy-revision").is_none(), "a tenant does not get the global revision: {headers:?}");
        assert!(tcp_ok(&a.ns, addr(c.v4, 8080)), "enforced when the write answered");
        let revision = api.policy_revision().await;
        let (_, agents) = api.platform.call(Method::GET, &format!("/palisade/v1/agents?revision={revision}"), None).await;
        assert_eq!(agents["results"][0]["applied"], true, "{agents}");
        drop(agent);
    });
}

#[test]
fn udp_icmp_by_type_and_ipv6() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[2]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let web = api.group_with_egress("web", [ingress("IPv4", "udp", 53), ingress("IPv6", "tcp", 80), ingress("IPv6", "udp", 53)]).await;
        let clients = api.group("clients", egress_all()).await;
        api.register(a, HOST, &[clients]).await;
        api.register(c, HOST, &[web]).await;
        for port in [53, 54] {
            udp_echo_server(&c.ns, addr(c.v4, port));
            udp_echo_server(&c.ns, addr(c.v6, port));
        }
        for port in [80, 81] {
            tcp_echo_server(&c.ns, addr(c.v6, port));
            tcp_echo_server(&c.ns, addr(c.v4, port));
        }
        let _agent = AgentProcess::spawn(&lab.dir, &api, HOST);
        api.converge(HOST).await;

        assert!(udp_ok(&a.ns, addr(c.v4, 53)), "udp 53 is open");
        assert!(!udp_ok(&a.ns, addr(c.v4, 54)), "udp 54 is not");
        assert!(udp_ok(&a.ns, addr(c.v6, 53)), "udp 53 over IPv6 is open");
        assert!(tcp_ok(&a.ns, addr(c.v6, 80)), "tcp 80 over IPv6 is open");
        assert!(!tcp_ok(&a.ns, addr(c.v6, 81)), "tcp 81 over IPv6 is not");
        assert!(!tcp_ok(&a.ns, addr(c.v4, 80)), "the tcp 80 rule is IPv6 only");

        // ICMP by type: an echo is refused until a rule for type 8 (IPv4) / 128 (IPv6) exists; a
        // rule for another type does not open it.
        assert!(!ping(&a.ns, c.v4.into()) && !ping(&a.ns, c.v6.into()), "no ICMP rule yet");
        api.add_rule(web, json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "port_range_min": 13})).await;
        api.converge(HOST).await;
        assert!(!ping(&a.ns, c.v4.into()), "timestamp (13) is not echo (8)");
        api.add_rule(
            web,
            json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0}),
        )
        .await;
        api.add_rule(web, json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128})).await;
        api.converge(HOST).await;
        assert!(ping(&a.ns, c.v4.into()), "echo request type 8 code 0 is open");
        assert!(ping(&a.ns, c.v6.into()), "ICMPv6 echo request type 128 is open");
    });
}

#[test]
fn remote_group_membership_is_a_set_element_change() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[3]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, b, c) = (&lab.instances[0], &lab.instances[1], &lab.instances[2]);
        let clients = api.group("clients", egress_all()).await;
        let others = api.group("others", egress_all()).await;
        let web = api.group_with_egress("web", [ingress_from("IPv4", "tcp", 80, clients), ingress_from("IPv6", "tcp", 80, clients)]).await;
        api.register(a, HOST, &[clients]).await;
        api.register(b, HOST, &[others]).await;
        api.register(c, HOST, &[web]).await;
        tcp_echo_server(&c.ns, addr(c.v4, 80));
        tcp_echo_server(&c.ns, addr(c.v6, 80));
        let _agent = AgentProcess::spawn(&lab.dir, &api, HOST);
        api.converge(HOST).await;

        assert!(tcp_ok(&a.ns, addr(c.v4, 80)) && tcp_ok(&a.ns, addr(c.v6, 80)), "a is a member of clients");
        assert!(!tcp_ok(&b.ns, addr(c.v4, 80)) && !tcp_ok(&b.ns, addr(c.v6, 80)), "b is not");
        let chain = format!("gi_{}", web.simple());
        let rules_before = rules_with_handles(&lab.nft(&format!("-a list chain inet palisade {chain}")));
        assert_eq!(rules_before.len(), 2, "{rules_before:?}");

        // b joins clients (Gcore #24 by name): it reaches c, and web's rules were not rewritten —
        // same rules, same handles; only the set of members changed.
        api.instance_group(b, "clients", true).await;
        api.converge(HOST).await;
        assert!(tcp_ok(&b.ns, addr(c.v4, 80)) && tcp_ok(&b.ns, addr(c.v6, 80)), "b joined clients");
        assert_eq!(rules_with_handles(&lab.nft(&format!("-a list chain inet palisade {chain}"))), rules_before);
        let members = lab.nft(&format!("list set inet palisade rg4_{}", clients.simple()));
        assert!(members.contains(&b.v4.to_string()) && members.contains(&a.v4.to_string()), "{members}");
        let (_, groups) = api.tenant.call(Method::GET, &format!("/cloud/v1/instances/1/1/{}/securitygroups", b.instance_id), None).await;
        assert_eq!(groups, json!({"count": 2, "results": [{"id": others, "name": "others"}, {"id": clients, "name": "clients"}]}));

        // b leaves (#25): refused again, still without rewriting web's rules.
        api.instance_group(b, "clients", false).await;
        api.converge(HOST).await;
        assert!(!tcp_ok(&b.ns, addr(c.v4, 80)) && !tcp_ok(&b.ns, addr(c.v6, 80)), "b left clients");
        assert!(tcp_ok(&a.ns, addr(c.v4, 80)), "a is still a member");
        assert_eq!(rules_with_handles(&lab.nft(&format!("-a list chain inet palisade {chain}"))), rules_before);
    });
}

#[test]
fn revoking_a_rule_cuts_its_established_connections_only() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[2]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let scene = ClientAndWeb::set_up(lab, api, HOST, &[80, 8080]).await;
        let mut cut = tcp_connect(&a.ns, None, addr(c.v4, 80)).expect("tcp 80 is open");
        let mut kept = tcp_connect(&a.ns, None, addr(c.v4, 8080)).expect("tcp 8080 is open");
        assert!(cut.echo("before") && kept.echo("before"));
        api.delete_rule(scene.open[0]).await;
        api.converge(HOST).await;
        assert!(!cut.echo("after"), "the established connection of the revoked rule is cut");
        assert!(kept.echo("after"), "a connection of a rule still in force lives on");
        assert!(!tcp_ok(&a.ns, addr(c.v4, 80)), "and no new one opens");
    });
}

#[test]
fn spoofed_sources_are_dropped() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[3]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, b, c) = (&lab.instances[0], &lab.instances[1], &lab.instances[2]);
        let web = api.group_with_egress("web", [ingress("IPv4", "tcp", 80), ingress("IPv6", "tcp", 80)]).await;
        let clients = api.group("clients", egress_all()).await;
        for vm in [a, b] {
            api.register(vm, HOST, &[clients]).await;
        }
        api.register(c, HOST, &[web]).await;
        tcp_echo_server(&c.ns, addr(c.v4, 80));
        tcp_echo_server(&c.ns, addr(c.v6, 80));
        // a also holds addresses that are not its port's; the host even routes them back to a,
        // so only the anti-spoofing rules stand between a and c.
        a.ns.sh("ip addr add 10.77.0.99/32 dev eth0 && ip -6 addr add fd77::99/128 dev eth0 nodad");
        lab.host.sh(&format!("ip route add 10.77.0.99/32 dev {0} && ip -6 route add fd77::99/128 dev {0}", a.device));
        let _agent = AgentProcess::spawn(&lab.dir, &api, HOST);
        api.converge(HOST).await;

        assert!(tcp_connect(&a.ns, Some(a.v4.into()), addr(c.v4, 80)).is_some(), "a's own address is fine");
        assert!(tcp_connect(&a.ns, Some(a.v6.into()), addr(c.v6, 80)).is_some(), "a's own IPv6 address is fine");
        assert!(tcp_connect(&a.ns, Some("10.77.0.99".parse().unwrap()), addr(c.v4, 80)).is_none(), "spoofed IPv4 source");
        assert!(tcp_connect(&a.ns, Some("fd77::99".parse().unwrap()), addr(c.v6, 80)).is_none(), "spoofed IPv6 source");
        let chain = lab.nft("list chain inet palisade port_spoof");
        assert!(counter(&chain, "spoofed IPv4 source") > 0 && counter(&chain, "spoofed IPv6 source") > 0, "{chain}");

        // b takes another MAC address: its frames are dropped even from its own IP address.
        assert!(tcp_ok(&b.ns, addr(c.v4, 80)));
        b.ns.sh("ip link set eth0 address 02:00:00:00:00:99");
        lab.host.sh(&format!("ip neigh flush dev {}", b.device));
        assert!(!tcp_ok(&b.ns, addr(c.v4, 80)), "spoofed source MAC");
        // b's first frame is an ARP request for its gateway (the address change flushed its
        // neighbours): the arp table drops it; an IP frame would meet the inet table's MAC check.
        let chain = lab.nft("list chain inet palisade port_spoof");
        let arp = lab.nft("list chain arp palisade arp_spoof");
        assert!(counter(&chain, "spoofed MAC") + counter(&arp, "spoofed ARP sender MAC") > 0, "{chain}\n{arp}");
    });
}

#[test]
fn agent_replaces_a_stale_table_survives_api_restarts_and_skips_unchanged_policies() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[2]) else { return };
    lab.run(async |lab| {
        // A table left by an earlier agent, with a chain the policy does not have.
        lab.nft("add table inet palisade");
        lab.nft("add chain inet palisade stale_leftover");
        let server = ServerProcess::start(&lab.dir).await;
        let api = Api::create(&lab.dir, 8080, &[HOST]);
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let ClientAndWeb { web, clients, agent, .. } = ClientAndWeb::set_up(lab, &api, HOST, &[]).await;
        assert!(!lab.nft("list table inet palisade").contains("stale_leftover"), "the stale table was replaced");
        assert!(!tcp_ok(&a.ns, addr(c.v4, 80)));

        // A change elsewhere (a port on another host, in a group no rule here names) does not
        // move this host's revision at all: nothing wakes its agent.
        let revision = api.converge(HOST).await;
        let before = lab.nft("-a list table inet palisade");
        let mut other = json!({"client_id": 1, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": "h2",
            "mac_address": "02:00:00:00:01:01", "fixed_ips": ["10.88.0.1"], "security_group_ids": [clients]});
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(other.take())).await;
        Api::expect(status, 201, &body);
        assert_eq!(api.converge(HOST).await, revision, "a port of h2 in a group no rule of h1 names leaves h1's revision");

        // A change here that the policy does not show (an instance renamed) moves the revision;
        // the agent reports it without touching its kernel.
        let rename = |name: &str| json!({"instance_name": name});
        let (status, body) = api.platform.call(Method::PATCH, &format!("/palisade/v1/ports/{}", a.port_id), Some(rename("renamed"))).await;
        Api::expect(status, 200, &body);
        assert!(api.converge(HOST).await > revision, "the rename moved h1's revision");
        assert_eq!(rules_with_handles(&lab.nft("-a list table inet palisade")), rules_with_handles(&before));
        assert!(agent.log_text().contains("policy unchanged"), "{}", agent.log_text());

        // Someone deletes the table: the agent restores it at its next step (here: the next
        // revision of its host, from another rename).
        lab.nft("delete table inet palisade");
        let (status, body) =
            api.platform.call(Method::PATCH, &format!("/palisade/v1/ports/{}", a.port_id), Some(rename("renamed-again"))).await;
        Api::expect(status, 200, &body);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !lab.host.sh("nft list tables").contains("table inet palisade") {
            assert!(std::time::Instant::now() < deadline, "the agent did not restore its table: {}", agent.log_text());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        api.converge(HOST).await;
        assert!(!tcp_ok(&a.ns, addr(c.v4, 80)), "the restored table filters again");

        // The API dies; the agent keeps the table and retries; the API comes back and the next
        // change reaches the kernel.
        server.kill();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let table = lab.nft("list table inet palisade");
        assert!(table.contains("oifname vmap @port_ingress"), "the table stays while the API is away");
        let server = ServerProcess::start(&lab.dir).await;
        api.add_rule(web, ingress("IPv4", "tcp", 80)).await;
        api.converge(HOST).await;
        assert!(tcp_ok(&a.ns, addr(c.v4, 80)), "the change made after the restart is enforced");
        assert!(agent.log_text().contains("agent step failed"), "the agent saw the API go: {}", agent.log_text());
        server.kill();
    });
}

/// The API of ports and instances; runs without root.
#[test]
fn ports_and_instances_api() {
    let dir = std::env::temp_dir().join(format!("palisade-ports-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Server::start(&dir, "127.0.0.1:0").await;
        let api = Api::create(&dir, server.port, &["h1"]);
        let web = api.group("web", egress_all()).await;
        let db = api.group("dbs", egress_all()).await;
        let instance = uuid::Uuid::new_v4();
        let port_body = |ip: &str, mac: &str| {
            json!({"client_id": 1, "project_id": 1, "region_id": 1, "instance_id": instance, "host": "h1", "mac_address": mac,
                   "fixed_ips": [ip], "security_group_ids": [web]})
        };
        let (status, p1) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(port_body("10.0.0.1", "FA:16:3E:00:00:01"))).await;
        Api::expect(status, 201, &p1);
        assert_eq!(p1["mac_address"], "fa:16:3e:00:00:01");
        assert_eq!(p1["device"], format!("tap{}", &p1["id"].as_str().unwrap()[..11]));
        let (status, p2) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(port_body("10.0.0.2", "fa:16:3e:00:00:02"))).await;
        Api::expect(status, 201, &p2);
        let (p1_id, p2_id) = (p1["id"].as_str().unwrap().to_string(), p2["id"].as_str().unwrap().to_string());

        // Only the platform runs the registry and lists the agents; a tenant reads its own ports;
        // an agent key reads its own host's policy and nothing else.
        let p1_path = format!("/palisade/v1/ports/{p1_id}");
        let forbidden = [
            (&api.tenant, Method::POST, "/palisade/v1/ports", Some(port_body("10.0.0.4", "fa:16:3e:00:00:04"))),
            (&api.tenant, Method::PATCH, p1_path.as_str(), Some(json!({"fixed_ips": ["10.0.0.5"]}))),
            (&api.tenant, Method::DELETE, p1_path.as_str(), None),
            (&api.tenant, Method::GET, "/palisade/v1/agents", None),
            (&api.tenant, Method::GET, "/palisade/v1/agents/h1/policy", None),
            (&api.platform, Method::GET, "/palisade/v1/agents/h1/policy", None),
            (&api.platform, Method::PUT, "/palisade/v1/agents/h1/status", Some(json!({"applied_revision": 1}))),
            (api.agent("h1"), Method::GET, "/palisade/v1/agents/h2/policy", None),
            (api.agent("h1"), Method::PUT, "/palisade/v1/agents/h2/status", Some(json!({"applied_revision": 1}))),
            (api.agent("h1"), Method::GET, "/palisade/v1/agents", None),
            (api.agent("h1"), Method::GET, "/palisade/v1/ports", None),
            (api.agent("h1"), Method::POST, "/palisade/v1/ports", Some(port_body("10.0.0.4", "fa:16:3e:00:00:04"))),
            (api.agent("h1"), Method::GET, "/cloud/v1/securitygroups/1/1", None),
        ];
        for (client, method, path, body) in forbidden {
            let (status, answer) = client.call(method.clone(), path, body).await;
            assert_eq!(status.as_u16(), 403, "{method} {path}: {answer}");
            assert_eq!(answer["exception_class"], "PermissionDenied", "{method} {path}: {answer}");
        }

        // Bad input is a 400 with invalid_fields, and nothing is stored.
        let (status, body) = api
            .platform
            .call(
                Method::POST,
                "/palisade/v1/ports",
                Some(json!({"project_id": 1, "region_id": 1, "instance_id": "x", "host": "bad host",
                "mac_address": "zz", "fixed_ips": ["300.1.1.1"]})),
            )
            .await;
        Api::expect(status, 400, &body);
        for field in ["client_id", "instance_id", "host", "mac_address", "fixed_ips.0"] {
            assert!(body["invalid_fields"].get(field).is_some(), "{field}: {body}");
        }
        // A port's addresses are unicast host addresses, at most 32 of them; its MAC is unicast
        // and not zero.
        for (i, ip) in [
            "127.0.0.1",
            "169.254.169.254",
            "169.254.0.7",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "::1",
            "fe80::5",
            "ff02::1",
            "::ffff:127.0.0.1",
        ]
        .into_iter()
        .enumerate()
        {
            let mut bad = port_body("10.0.0.3", &format!("fa:16:3e:00:01:{i:02x}"));
            bad["fixed_ips"] = json!(["10.0.0.3", ip]);
            let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(bad)).await;
            assert_eq!(status.as_u16(), 400, "{ip}: {body}");
            assert!(body["invalid_fields"].get("fixed_ips.1").is_some(), "{ip}: {body}");
            assert!(body["invalid_fields"].get("fixed_ips.0").is_none(), "{ip}: {body}");
        }
        let mut many = port_body("10.0.0.3", "fa:16:3e:00:00:03");
        many["fixed_ips"] = json!((1..=33).map(|i| format!("10.1.0.{i}")).collect::<Vec<_>>());
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(many.clone())).await;
        Api::expect(status, 400, &body);
        assert!(body["invalid_fields"].get("fixed_ips").is_some(), "{body}");
        many["fixed_ips"] = json!((1..=32).map(|i| format!("10.1.0.{i}")).collect::<Vec<_>>());
        many["host"] = json!("h3");
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(many)).await;
        Api::expect(status, 201, &body);
        assert_eq!(body["fixed_ips"].as_array().unwrap().len(), 32);
        let (status, body) = api.platform.call(Method::DELETE, &format!("/palisade/v1/ports/{}", body["id"].as_str().unwrap()), None).await;
        Api::expect(status, 204, &body);
        for mac in ["00:00:00:00:00:00", "01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff"] {
            let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(port_body("10.0.0.3", mac))).await;
            assert_eq!(status.as_u16(), 400, "{mac}: {body}");
            assert!(body["invalid_fields"].get("mac_address").is_some(), "{mac}: {body}");
        }
        let mut unknown_group = port_body("10.0.0.3", "fa:16:3e:00:00:03");
        unknown_group["security_group_ids"] = json!([uuid::Uuid::new_v4()]);
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(unknown_group)).await;
        Api::expect(status, 404, &body);

        // A device is one interface of a host and a MAC one NIC, whatever the client: another
        // client's port may take neither on the same host (409 naming the port that has it), nor
        // a port id any client uses; nor bind a group of client 1.
        let p1_device = p1["device"].as_str().unwrap();
        let client2 = |host: &str, device: &str, mac: &str| {
            json!({"client_id": 2, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": host,
                   "device": device, "mac_address": mac, "fixed_ips": ["10.2.0.1"]})
        };
        let (status, body) =
            api.platform.call(Method::POST, "/palisade/v1/ports", Some(client2("h1", p1_device, "fa:16:3e:00:02:01"))).await;
        Api::expect(status, 409, &body);
        assert_eq!(body["exception_class"], "PortDeviceInUse", "{body}");
        assert_eq!(body["info"]["port_id"], json!(p1_id), "{body}");
        assert!(body["message"].as_str().unwrap().contains(&p1_id), "{body}");
        let (status, body) =
            api.platform.call(Method::POST, "/palisade/v1/ports", Some(client2("h1", "tap-c2-a", "FA:16:3E:00:00:02"))).await;
        Api::expect(status, 409, &body);
        assert_eq!(body["exception_class"], "PortMacInUse", "{body}");
        assert_eq!(body["info"]["port_id"], json!(p2_id), "{body}");
        let mut taken_id = client2("h3", "tap-c2-b", "fa:16:3e:00:02:02");
        taken_id["id"] = json!(p1_id);
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(taken_id)).await;
        Api::expect(status, 409, &body);
        assert_eq!(body["exception_class"], "PortExists", "{body}");
        let mut foreign_group = client2("h1", "tap-c2-c", "fa:16:3e:00:02:03");
        foreign_group["security_group_ids"] = json!([web]);
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(foreign_group)).await;
        Api::expect(status, 404, &body);
        // The same device and MAC are free on another host; a free device and MAC on h1 too.
        let (status, body) =
            api.platform.call(Method::POST, "/palisade/v1/ports", Some(client2("h2", p1_device, "fa:16:3e:00:00:01"))).await;
        Api::expect(status, 201, &body);
        let (status, other_client) =
            api.platform.call(Method::POST, "/palisade/v1/ports", Some(client2("h1", "tap-c2-d", "fa:16:3e:00:02:04"))).await;
        Api::expect(status, 201, &other_client);
        assert_eq!(other_client["client_id"], 2);
        let other_client_id = other_client["id"].as_str().unwrap().to_string();

        // The tenant sees its own ports only; the platform sees every client's.
        let (_, list) = api.tenant.call(Method::GET, "/palisade/v1/ports?host=h1", None).await;
        assert_eq!(list["count"], 2, "{list}");
        let (_, list) = api.tenant.call(Method::GET, "/palisade/v1/ports?host=h2", None).await;
        assert_eq!(list["count"], 0, "{list}");
        let (status, body) = api.tenant.call(Method::GET, &format!("/palisade/v1/ports/{other_client_id}"), None).await;
        Api::expect(status, 404, &body);
        let (_, list) = api.platform.call(Method::GET, "/palisade/v1/ports?host=h1", None).await;
        assert_eq!(list["count"], 3, "{list}");
        let (_, list) = api.platform.call(Method::GET, "/palisade/v1/ports?host=h1&client_id=2", None).await;
        assert_eq!(list["count"], 1, "{list}");

        // #24 / #25 / #26 by name; per port and for all ports.
        let path = |action: &str| format!("/cloud/v1/instances/1/1/{instance}/{action}");
        let (status, body) = api
            .tenant
            .call(
                Method::POST,
                &path("addsecuritygroup"),
                Some(json!({"ports_security_group_names": [{"port_id": p2_id, "security_group_names": ["dbs"]}]})),
            )
            .await;
        Api::expect(status, 204, &body);
        let (_, p2_now) = api.tenant.call(Method::GET, &format!("/palisade/v1/ports/{p2_id}"), None).await;
        assert_eq!(p2_now["security_group_ids"], json!([web, db]));
        let (_, p1_now) = api.tenant.call(Method::GET, &format!("/palisade/v1/ports/{p1_id}"), None).await;
        assert_eq!(p1_now["security_group_ids"], json!([web]));
        let (_, groups) = api.tenant.call(Method::GET, &path("securitygroups"), None).await;
        assert_eq!(groups, json!({"count": 2, "results": [{"id": web, "name": "web"}, {"id": db, "name": "dbs"}]}));
        // An unknown name anywhere in the body is a 404 and changes nothing.
        let (status, body) = api
            .tenant
            .call(
                Method::POST,
                &path("delsecuritygroup"),
                Some(json!({"ports_security_group_names": [
                {"port_id": null, "security_group_names": ["web"]}, {"port_id": null, "security_group_names": ["nope"]}]})),
            )
            .await;
        Api::expect(status, 404, &body);
        let (_, groups_after) = api.tenant.call(Method::GET, &path("securitygroups"), None).await;
        assert_eq!(groups_after, groups);
        let (status, body) = api
            .tenant
            .call(Method::POST, &format!("/cloud/v1/instances/1/1/{}/addsecuritygroup", uuid::Uuid::new_v4()), Some(json!({"name": "web"})))
            .await;
        Api::expect(status, 404, &body);
        let (status, body) =
            api.tenant.call(Method::POST, "/cloud/v1/instances/1/1/instance_id/addsecuritygroup", Some(json!({"name": "web"}))).await;
        Api::expect(status, 404, &body);
        let (status, body) = api.tenant.call(Method::POST, &path("addsecuritygroup"), Some(json!({}))).await;
        Api::expect(status, 400, &body);

        // The legacy create's `instances` binds the new group to their ports; an unknown instance
        // is a 404 and creates nothing.
        let (status, body) = api
            .tenant
            .call(
                Method::POST,
                "/cloud/v1/securitygroups/1/1",
                Some(json!({"security_group": {"name": "legacy-bound", "security_group_rules": []}, "instances": [instance]})),
            )
            .await;
        Api::expect(status, 200, &body);
        let legacy = body["id"].clone();
        let (_, groups_now) = api.tenant.call(Method::GET, &path("securitygroups"), None).await;
        assert_eq!(groups_now["count"], 3);
        assert!(groups_now["results"].as_array().unwrap().iter().any(|g| g["id"] == legacy), "{groups_now}");
        let (status, body) = api
            .tenant
            .call(
                Method::POST,
                "/cloud/v1/securitygroups/1/1",
                Some(json!({"security_group": {"name": "legacy-none", "security_group_rules": []}, "instances": [uuid::Uuid::new_v4()]})),
            )
            .await;
        Api::expect(status, 404, &body);
        let (_, all) = api.tenant.call(Method::GET, "/cloud/v1/securitygroups/1/1?name=legacy-none", None).await;
        assert_eq!(all["count"], 0);
        let (status, body) = api.tenant.call(Method::POST, &path("delsecuritygroup"), Some(json!({"name": "legacy-bound"}))).await;
        Api::expect(status, 204, &body);

        // #21: the instances whose ports use a group.
        let (status, users) = api.tenant.call(Method::GET, &format!("/cloud/v1/securitygroups/1/1/{db}/instances"), None).await;
        Api::expect(status, 200, &users);
        assert_eq!(users["count"], 1);
        assert_eq!(users["results"][0]["id"], json!(instance));
        assert_eq!(users["results"][0]["ports"][0]["id"], json!(p2_id));

        // A group bound to a port cannot be deleted: 409 naming the ports and instances.
        let (status, body) = api.tenant.call(Method::DELETE, &format!("/cloud/v1/securitygroups/1/1/{web}"), None).await;
        Api::expect(status, 409, &body);
        assert_eq!(body["exception_class"], "SecurityGroupInUse");
        assert_eq!(body["info"], json!({"ports": [p1_id, p2_id], "instances": [instance]}));
        // Unbound everywhere (#25 with port_id null), it can.
        let (status, body) = api.tenant.call(Method::POST, &path("delsecuritygroup"), Some(json!({"name": "web"}))).await;
        Api::expect(status, 204, &body);
        let (status, body) = api.tenant.call(Method::DELETE, &format!("/cloud/v1/securitygroups/1/1/{web}"), None).await;
        Api::expect(status, 204, &body);

        // The policy revision grows with bindings, and an agent's long-poll returns on a change.
        // The host's policy holds every client's ports on it: client 2's unbound one too.
        let agent = api.agent("h1");
        let (status, policy) = agent.call(Method::GET, "/palisade/v1/agents/h1/policy", None).await;
        Api::expect(status, 200, &policy);
        let revision = policy["revision"].as_i64().unwrap();
        let ports = |policy: &Value| -> BTreeSet<String> {
            policy["ports"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ports(&policy), BTreeSet::from([p1_id.clone(), p2_id.clone(), other_client_id.clone()]), "{policy}");
        assert_eq!(policy["security_groups"].as_array().unwrap().len(), 1, "only db is bound now");
        let waiter = {
            let agent = agent.clone();
            tokio::spawn(
                async move { agent.call(Method::GET, &format!("/palisade/v1/agents/h1/policy?after={revision}&wait=10"), None).await },
            )
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "nothing changed yet");
        let (status, body) = api.platform.call(Method::DELETE, &format!("/palisade/v1/ports/{p1_id}"), None).await;
        Api::expect(status, 204, &body);
        let (status, newer) = waiter.await.unwrap();
        Api::expect(status, 200, &newer);
        assert!(newer["revision"].as_i64().unwrap() > revision);
        assert_eq!(ports(&newer), BTreeSet::from([p2_id.clone(), other_client_id.clone()]), "{newer}");
        let (status, _) = agent.call(Method::GET, &format!("/palisade/v1/agents/h1/policy?after={}&wait=1", newer["revision"]), None).await;
        assert_eq!(status.as_u16(), 304, "no change within the wait");

        // A change that does not reach h1 (a port on h2 in db, which no rule on h1 names as its
        // remote group) does not wake h1's agent at all: its wait runs out at the same revision.
        let (_, headers, current) = agent.call_full(Method::GET, "/palisade/v1/agents/h1/policy", None).await;
        let tag = headers["etag"].to_str().unwrap().to_string();
        let elsewhere = json!({"client_id": 1, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": "h2",
            "mac_address": "fa:16:3e:00:00:09", "fixed_ips": ["10.0.0.9"], "security_group_ids": [db]});
        let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(elsewhere)).await;
        Api::expect(status, 201, &body);
        let started = std::time::Instant::now();
        let (status, headers) =
            agent.get_if_none_match(&format!("/palisade/v1/agents/h1/policy?after={}&wait=1", current["revision"]), &tag).await;
        assert_eq!(status.as_u16(), 304);
        assert_eq!(headers["x-policy-revision"].to_str().unwrap(), current["revision"].to_string(), "h1's revision did not move");
        assert!(started.elapsed() >= std::time::Duration::from_millis(900), "the wait ran out: nothing woke h1");

        // An agent that holds the current content (its ETag) gets a bodiless 304 at the new
        // revision when the revision passed what it applied but the content is what it holds
        // (here: it asks after an older revision), and the full policy when the content changed.
        let (status, headers) = agent
            .get_if_none_match(&format!("/palisade/v1/agents/h1/policy?after={}&wait=5", current["revision"].as_i64().unwrap() - 1), &tag)
            .await;
        assert_eq!(status.as_u16(), 304);
        assert_eq!(headers["x-policy-revision"].to_str().unwrap(), current["revision"].to_string());
        let (status, body) = api
            .platform
            .call(Method::PATCH, &format!("/palisade/v1/ports/{p2_id}"), Some(json!({"fixed_ips": ["10.0.0.2", "10.0.0.22"]})))
            .await;
        Api::expect(status, 200, &body);
        let (status, _) =
            agent.get_if_none_match(&format!("/palisade/v1/agents/h1/policy?after={}&wait=5", current["revision"]), &tag).await;
        assert_eq!(status.as_u16(), 200, "the port's addresses changed");

        // The agent reports its own host's status; the platform lists one row per host.
        let revision = api.policy_revision().await;
        let (status, body) = agent.call(Method::PUT, "/palisade/v1/agents/h1/status", Some(json!({"applied_revision": revision}))).await;
        Api::expect(status, 200, &body);
        let (status, agents) = api.platform.call(Method::GET, "/palisade/v1/agents", None).await;
        Api::expect(status, 200, &agents);
        assert_eq!(agents["count"], 1, "{agents}");
        assert_eq!(agents["results"][0]["host"], "h1", "{agents}");
        assert_eq!(agents["results"][0]["in_sync"], true, "{agents}");
        assert!(agents["results"][0].get("client_id").is_none(), "{agents}");
        server.stop().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/benchmarks.md, "Data plane": time from an API change (a rule added with the synchronous
/// v1 call) to the host's agent reporting that revision applied (its `nft -f` returned), on a
/// host with 100 ports and 1,000 rules. `cargo test --release -p palisade --test dataplane --
/// --ignored --nocapture api_change_to_kernel`.
#[test]
#[ignore = "benchmark"]
fn api_change_to_kernel_latency() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[1]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let mut groups = Vec::new();
        for g in 0..10 {
            let rules: Vec<Value> = (0..100).map(|i| rule("ingress", "IPv4", Some("tcp"), Some(1000 + g * 100 + i), None, None)).collect();
            groups.push(api.group(&format!("group-{g}"), rules).await);
        }
        api.register(&lab.instances[0], HOST, &groups[..1]).await;
        for p in 1..100u32 {
            let body = json!({"client_id": 1, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": HOST,
                "mac_address": format!("02:00:00:01:{:02x}:{:02x}", p / 256, p % 256),
                "fixed_ips": [format!("10.99.{}.{}", p / 256, p % 256)], "security_group_ids": [groups[p as usize % 10]]});
            let (status, body) = api.platform.call(Method::POST, "/palisade/v1/ports", Some(body)).await;
            Api::expect(status, 201, &body);
        }
        let _agent = AgentProcess::spawn(&lab.dir, &api, HOST);
        api.converge(HOST).await;
        let mut samples = Vec::new();
        for i in 0..200u16 {
            let started = std::time::Instant::now();
            api.add_rule(groups[usize::from(i) % 10], rule("ingress", "IPv4", Some("udp"), Some(20_000 + i), None, None)).await;
            let (_, agents) = api.platform.call(Method::GET, "/palisade/v1/agents", None).await;
            let revision = agents["policy_revision"].as_i64().unwrap();
            loop {
                let (_, agents) = api.platform.call(Method::GET, "/palisade/v1/agents", None).await;
                if agents["results"][0]["applied_revision"].as_i64().unwrap() >= revision {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            samples.push(started.elapsed());
        }
        report("v1 rule create (synchronous), then agent status polled", samples);

        // The Gcore v2 path: a task, run by the worker, then the agents; one call with
        // ?wait_for_agents answers when the host's agent has applied the change.
        let mut samples = Vec::new();
        for i in 0..200u16 {
            let started = std::time::Instant::now();
            let (status, headers, body) = api
                .tenant
                .call_full(
                    Method::POST,
                    &format!("/cloud/v2/security_groups/1/1/{}/rules?wait_for_agents=10", groups[usize::from(i) % 10]),
                    Some(rule("ingress", "IPv4", Some("udp"), Some(30_000 + i), None, None)),
                )
                .await;
            Api::expect(status, 200, &body);
            assert_eq!(headers["x-agents-pending"], "");
            samples.push(started.elapsed());
        }
        report("v2 rule create (task) with ?wait_for_agents", samples);
    });
}

fn report(what: &str, mut samples: Vec<std::time::Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "API change -> kernel, {what}, {} changes: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
