//! Data-plane tests: groups created through the API, bound to ports of instances that are network
//! namespaces on a "host" namespace, enforced by the real `palisade agent` with nftables, and
//! checked with real traffic. Root only (CI runs as root); they skip with a message otherwise.

mod lab;
mod traffic;

use std::net::{IpAddr, SocketAddr};

use lab::{AgentProcess, Api, Lab, Server, can_run, egress_all, new_key, rule};
use traffic::{tcp_echo_server, tcp_ok};

const HOST: &str = "h1";

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn with(mut rules: Vec<serde_json::Value>, more: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rules.extend(more);
    rules
}

#[test]
fn tcp_by_port_and_by_source_prefix() {
    if !can_run() {
        return;
    }
    let lab = Lab::new(3);
    lab.run(|lab| async move {
        let server = Server::start(&lab.dir).await;
        let token = new_key(&lab.dir);
        let api = Api::new(&token);
        let (a, b, c) = (&lab.instances[0], &lab.instances[1], &lab.instances[2]);
        let a_prefix = format!("{}/32", a.v4);
        let web = api
            .group(
                "web",
                with(egress_all(), vec![
                    rule("ingress", "IPv4", Some("tcp"), Some(80), None, None),
                    rule("ingress", "IPv4", Some("tcp"), Some(22), Some(&a_prefix), None),
                ]),
            )
            .await;
        let clients = api.group("clients", egress_all()).await;
        api.register(a, HOST, &[clients]).await;
        api.register(b, HOST, &[clients]).await;
        api.register(c, HOST, &[web]).await;
        for port in [22, 80, 8080] {
            tcp_echo_server(&c.ns, addr(c.v4, port));
        }
        tcp_echo_server(&a.ns, addr(a.v4, 80));
        let agent = AgentProcess::spawn(&lab.dir, &token, HOST);
        api.converge(HOST).await;

        assert!(tcp_ok(&a.ns, addr(c.v4, 80)), "tcp 80 is open to everyone");
        assert!(tcp_ok(&b.ns, addr(c.v4, 80)), "tcp 80 is open to everyone");
        assert!(!tcp_ok(&a.ns, addr(c.v4, 8080)), "no rule opens 8080");
        assert!(tcp_ok(&a.ns, addr(c.v4, 22)), "tcp 22 is open to a's prefix");
        assert!(!tcp_ok(&b.ns, addr(c.v4, 22)), "b is outside the prefix of the tcp 22 rule");
        assert!(!tcp_ok(&c.ns, addr(a.v4, 80)), "the clients group has no ingress rule");

        // Per-rule counters name their rule.
        let table = lab.nft("list table inet palisade");
        let (_, group) = api.call(reqwest::Method::GET, &format!("/cloud/v1/securitygroups/1/1/{web}"), None).await;
        for r in group["security_group_rules"].as_array().unwrap() {
            assert!(table.contains(&format!("accept comment \"rule {}\"", r["id"].as_str().unwrap())), "{table}");
        }
        drop(agent);
        server.stop().await;
    });
}
