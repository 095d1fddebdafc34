//! One host, every tenant (issue 11): the same traffic matrix on a routed and on a bridged host
//! with two hosts and a remote group across them; two clients on one host; stray and refused
//! devices dropped both ways; an agent restarted after a revocation made while it was down; an
//! agent catching up after a 10-second API outage.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::lab::{
    AgentProcess, Api, ClientAndWeb, Instance, Lab, ServerProcess, Wiring, addr, counter, egress_all, ingress, ingress_from, management_ip,
    rules_with_handles, test_each_wiring,
};
use crate::traffic::{Probe, arp_claim_answered, mismatches, tcp_connect, tcp_connect_bound, tcp_echo_server, udp_echo_server};

/// Fails with every mismatch of `probes` at once.
#[track_caller]
fn expect_all(what: &str, probes: &[(String, &crate::lab::Netns, Probe, bool)]) {
    let wrong = mismatches(probes);
    assert!(wrong.is_empty(), "{what}: {} of {} probes wrong:\n{}", wrong.len(), probes.len(), wrong.join("\n"));
}

fn p<'a>(label: &str, from: &'a Instance, probe: Probe, allowed: bool) -> (String, &'a crate::lab::Netns, Probe, bool) {
    (label.to_string(), &from.ns, probe, allowed)
}

/// Waits (at most 10 s) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The table that holds a wiring's anti-spoofing and stray-device rules.
fn edge_table(wiring: Wiring) -> &'static str {
    match wiring {
        Wiring::Routed => "inet palisade",
        Wiring::Bridged => "bridge palisade",
    }
}

test_each_wiring!(traffic_matrix_on_routed_hosts, traffic_matrix_on_bridged_hosts => traffic_matrix);

/// Two hosts, h1 (a, c, m) and h2 (d, e); one agent each, in `--mode auto`; the second host's
/// agent reaches the API over the management link. `web` (c) takes TCP 80 and UDP 53 from
/// anyone, TCP 22 and echo requests from members of `clients` (a, m on h1; d on h2); `clients`
/// take TCP 80 from anyone; e is in `others`.
fn traffic_matrix(wiring: Wiring) {
    let Some(lab) = Lab::if_can_run(wiring, &[3, 2]) else { return };
    lab.run_with_api(&["h1", "h2"], async |lab, api| {
        let [a, c, m, d, e] = [0, 1, 2, 3, 4].map(|i| &lab.instances[i]);
        let clients = api.group_with_egress("clients", [ingress("IPv4", "tcp", 80)]).await;
        let others = api.group("others", egress_all()).await;
        let web = api
            .group_with_egress("web", [
                        ingress("IPv4", "tcp", 80),
                        ingress("IPv6", "tcp", 80),
                        ingress_from("IPv4", "tcp", 22, clients),
                        ingress_from("IPv6", "tcp", 22, clients),
                        ingress("IPv4", "udp", 53),
                        ingress("IPv6", "udp", 53),
                        json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "port_range_min": 8, "remote_group_id": clients}),
                        json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128, "remote_group_id": clients}),
                    ])
            .await;
        api.register(a, "h1", &[clients]).await;
        api.register(c, "h1", &[web]).await;
        api.register(m, "h1", &[clients]).await;
        api.register(d, "h2", &[clients]).await;
        api.register(e, "h2", &[others]).await;
        for port in [80, 22, 8080] {
            tcp_echo_server(&c.ns, addr(c.v4, port));
            tcp_echo_server(&c.ns, addr(c.v6, port));
        }
        for port in [53, 54] {
            udp_echo_server(&c.ns, addr(c.v4, port));
            udp_echo_server(&c.ns, addr(c.v6, port));
        }
        for port in [80, 8080] {
            tcp_echo_server(&a.ns, addr(a.v4, port));
        }
        // a also holds addresses that are not its port's (on a routed host the host even routes
        // them back to a), so only anti-spoofing stands between them and c.
        match wiring {
            Wiring::Routed => {
                a.ns.sh("ip addr add 10.77.0.99/32 dev eth0 && ip -6 addr add fd77::99/128 dev eth0 nodad");
                lab.host.sh(&format!("ip route add 10.77.0.99/32 dev {0} && ip -6 route add fd77::99/128 dev {0}", a.device));
            }
            Wiring::Bridged => {
                // Deprecated, so a's own address stays the one it picks to reach its neighbours.
                a.ns.sh("ip addr add 10.77.0.99/24 dev eth0 && ip -6 addr add fd77::99/64 dev eth0 nodad preferred_lft 0");
            }
        }
        let h1 = AgentProcess::spawn(&lab.dir, &api, "h1");
        let h2 = AgentProcess::spawn_with(&lab.dir, &api, "h2", Some(&lab.others[0]), &format!("http://{}:8080", management_ip(0)), &[]);
        api.converge("h1").await;
        api.converge("h2").await;
        let (_, agents) = api.platform.call(Method::GET, "/palisade/v1/agents", None).await;
        assert_eq!(agents["count"], 2, "one row per host: {agents}");

        expect_all(
            &format!("{wiring:?} matrix"),
            &[
                p("a->c tcp 80", a, Probe::Tcp(addr(c.v4, 80)), true),
                p("a->c tcp 80 v6", a, Probe::Tcp(addr(c.v6, 80)), true),
                p("a->c tcp 8080", a, Probe::Tcp(addr(c.v4, 8080)), false),
                p("a->c tcp 8080 v6", a, Probe::Tcp(addr(c.v6, 8080)), false),
                p("a->c tcp 22 (member)", a, Probe::Tcp(addr(c.v4, 22)), true),
                p("a->c tcp 22 v6 (member)", a, Probe::Tcp(addr(c.v6, 22)), true),
                p("d->c tcp 22 (member on h2)", d, Probe::Tcp(addr(c.v4, 22)), true),
                p("d->c tcp 22 v6 (member on h2)", d, Probe::Tcp(addr(c.v6, 22)), true),
                p("e->c tcp 22 (not a member, h2)", e, Probe::Tcp(addr(c.v4, 22)), false),
                p("e->c tcp 22 v6 (not a member, h2)", e, Probe::Tcp(addr(c.v6, 22)), false),
                p("e->c tcp 80 (h2)", e, Probe::Tcp(addr(c.v4, 80)), true),
                p("a->c udp 53", a, Probe::Udp(addr(c.v4, 53)), true),
                p("a->c udp 53 v6", a, Probe::Udp(addr(c.v6, 53)), true),
                p("a->c udp 54", a, Probe::Udp(addr(c.v4, 54)), false),
                p("a->c udp 54 v6", a, Probe::Udp(addr(c.v6, 54)), false),
                p("a->c echo (member)", a, Probe::Ping(c.v4.into()), true),
                p("a->c echo v6 (member)", a, Probe::Ping(c.v6.into()), true),
                p("d->c echo v6 (member on h2)", d, Probe::Ping(c.v6.into()), true),
                p("e->c echo (not a member)", e, Probe::Ping(c.v4.into()), false),
                p("e->c echo v6 (not a member)", e, Probe::Ping(c.v6.into()), false),
                p("c->a tcp 80", c, Probe::Tcp(addr(a.v4, 80)), true),
                p("c->a tcp 8080", c, Probe::Tcp(addr(a.v4, 8080)), false),
            ],
        );
        // Spoofed sources after the rest: a's neighbour solicitations from a spoofed source are
        // dropped too, which leaves its neighbour entries unresolved for a while.
        expect_all(
            "spoofed sources",
            &[
                p("a->c from its own address", a, Probe::TcpFrom(a.v4.into(), addr(c.v4, 80)), true),
                p("a->c from its own IPv6 address", a, Probe::TcpFrom(a.v6.into(), addr(c.v6, 80)), true),
                p("a->c from a spoofed IPv4 source", a, Probe::TcpFrom("10.77.0.99".parse().unwrap(), addr(c.v4, 80)), false),
                p("a->c from a spoofed IPv6 source", a, Probe::TcpFrom("fd77::99".parse().unwrap(), addr(c.v6, 80)), false),
            ],
        );
        let spoof = lab.nft(&format!("list chain {} port_spoof", edge_table(wiring)));
        assert!(counter(&spoof, "spoofed IPv4 source") > 0 && counter(&spoof, "spoofed IPv6 source") > 0, "{spoof}");

        // ARP: a may claim only its own MAC and IPv4 address. Asked with its own, the host (routed)
        // or c (bridged) answers; claiming m's address, or m's MAC, nobody does.
        let target = match wiring {
            Wiring::Routed => "169.254.1.1".parse().unwrap(),
            Wiring::Bridged => c.v4,
        };
        let claims = std::thread::scope(|scope| {
            let own = scope.spawn(|| arp_claim_answered(&a.ns, &a.mac, &a.mac, a.v4, target));
            let other_ip = scope.spawn(|| arp_claim_answered(&a.ns, &a.mac, &a.mac, m.v4, target));
            let other_mac = scope.spawn(|| arp_claim_answered(&a.ns, &a.mac, &m.mac, a.v4, target));
            [own.join().unwrap(), other_ip.join().unwrap(), other_mac.join().unwrap()]
        });
        assert_eq!(claims, [true, false, false], "ARP answered for a's own claim, m's address, m's MAC");
        let arp_chain = match wiring {
            Wiring::Routed => lab.nft("list chain arp palisade arp_spoof"),
            Wiring::Bridged => lab.nft("list chain bridge palisade port_spoof"),
        };
        assert!(counter(&arp_chain, "spoofed ARP sender IPv4") > 0 && counter(&arp_chain, "spoofed ARP sender MAC") > 0, "{arp_chain}");

        // m takes another MAC address: its frames are dropped even from its own IP address.
        expect_all("m before", &[p("m->c tcp 80", m, Probe::Tcp(addr(c.v4, 80)), true)]);
        m.ns.sh("ip link set eth0 address 02:00:00:00:00:99");
        if wiring == Wiring::Routed {
            lab.host.sh(&format!("ip neigh flush dev {}", m.device));
        }
        expect_all("m with a spoofed MAC", &[p("m->c tcp 80", m, Probe::Tcp(addr(c.v4, 80)), false)]);
        // Routed, m's first frame is an ARP request for its gateway (the address change flushed
        // its neighbours), dropped by the arp table; bridged, the bridge table drops every frame.
        let (chain, comment) = match wiring {
            Wiring::Routed => ("arp palisade arp_spoof", "spoofed ARP sender MAC"),
            Wiring::Bridged => ("bridge palisade port_spoof", "spoofed MAC"),
        };
        let listing = lab.nft(&format!("list chain {chain}"));
        assert!(counter(&listing, comment) > 0, "{listing}");

        // A tap device no port names is dropped both ways, with its own counter and a log line.
        let x = lab.stray(0, "tapx1", 98);
        tcp_echo_server(&x.ns, addr(x.v4, 80));
        eventually("the agent names the stray device", || h1.log_text().contains("tapx1")).await;
        expect_all(
            "stray device",
            &[p("x->c tcp 80", &x, Probe::Tcp(addr(c.v4, 80)), false), p("c->x tcp 80", c, Probe::Tcp(addr(x.v4, 80)), false)],
        );
        let table = edge_table(wiring);
        let inbound = lab.nft(&format!("list chain {table} unregistered_in"));
        let outbound = lab.nft(&format!("list chain {table} unregistered_out"));
        assert!(counter(&inbound, "unregistered device tapx1") > 0, "{inbound}");
        assert!(counter(&outbound, "unregistered device tapx1") > 0, "{outbound}");
        assert!(h1.log_text().contains("not a port of this host: dropped both ways"), "{}", h1.log_text());

        // A port deregistered is closed both ways.
        api.deregister(a).await;
        api.converge("h1").await;
        expect_all(
            "a deregistered",
            &[p("a->c tcp 80", a, Probe::Tcp(addr(c.v4, 80)), false), p("c->a tcp 80", c, Probe::Tcp(addr(a.v4, 80)), false)],
        );
        let named = format!("device=\"{}\"", a.device);
        eventually("the agent names the deregistered device", || {
            h1.log_text().lines().any(|l| l.contains("not a port of this host") && l.contains(&named))
        })
        .await;
        drop((h1, h2));
    });
}

/// A flow between two instances of the lab: (from, its client, to, its client, destination,
/// whether the kernel should let it through).
type Flow = (usize, i64, usize, i64, SocketAddr, bool);

/// Checks `flows` against the kernel (real connections) and against the verdict API: the
/// source port's egress and the destination port's ingress, each asked by its own client, must
/// both allow exactly the flows the kernel lets through.
async fn check_flows(lab: &Lab, api: &Api, what: &str, flows: &[Flow]) {
    let vm = |i: usize| &lab.instances[i];
    let probes: Vec<_> = flows
        .iter()
        .map(|(from, _, to, _, dst, want)| {
            p(&format!("{}->{} {dst}", vm(*from).device, vm(*to).device), vm(*from), Probe::Tcp(*dst), *want)
        })
        .collect();
    expect_all(what, &probes);
    for (from, from_client, to, to_client, dst, want) in flows {
        let source: IpAddr = if dst.is_ipv4() { vm(*from).v4.into() } else { vm(*from).v6.into() };
        let mut allowed = true;
        for (client, port, direction, remote) in [(*from_client, vm(*from), "egress", dst.ip()), (*to_client, vm(*to), "ingress", source)] {
            let body = json!({"flows": [{"port_id": port.port_id, "direction": direction, "remote_ip": remote.to_string(),
                "protocol": "tcp", "port": dst.port()}]});
            let (status, answer) = api.as_client(client).tenant.call(Method::POST, "/palisade/v1/verdicts", Some(body)).await;
            Api::expect(status, 200, &answer);
            allowed &= answer["results"][0]["allowed"].as_bool().unwrap();
        }
        assert_eq!(
            allowed,
            *want,
            "{what}: the verdict API says {allowed} for {} -> {} {dst}, the kernel {want}",
            vm(*from).device,
            vm(*to).device
        );
    }
}

/// Two clients with ports on one host, each with groups named `clients` and `web` and the same
/// rules: each client's matrix holds, client 2's changes never touch client 1's flows or chains,
/// the verdict API agrees with the kernel for both, and a device claimed by two ports (legacy
/// data) is refused and dropped, never last-wins.
#[test]
fn two_clients_share_one_host() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[4]) else { return };
    lab.run_with_api(&["h1"], async |lab, api| {
        let (one, two) = (api.as_client(1), api.as_client(2));
        let [a1, c1, a2, c2] = [0, 1, 2, 3].map(|i| &lab.instances[i]);
        let mut groups = Vec::new();
        for api in [&one, &two] {
            let clients = api.group_with_egress("clients", [ingress("IPv4", "tcp", 80)]).await;
            let web = api
                .group_with_egress(
                    "web",
                    [ingress("IPv4", "tcp", 80), ingress_from("IPv4", "tcp", 22, clients), ingress_from("IPv6", "tcp", 22, clients)],
                )
                .await;
            groups.push((clients, web));
        }
        let [(clients1, web1), (clients2, web2)] = [groups[0], groups[1]];
        one.register(a1, "h1", &[clients1]).await;
        one.register(c1, "h1", &[web1]).await;
        two.register(a2, "h1", &[clients2]).await;
        two.register(c2, "h1", &[web2]).await;
        for c in [c1, c2] {
            for port in [22, 80, 8080] {
                tcp_echo_server(&c.ns, addr(c.v4, port));
            }
            tcp_echo_server(&c.ns, addr(c.v6, 22));
        }
        tcp_echo_server(&a1.ns, addr(a1.v4, 80));
        let agent = AgentProcess::spawn(&lab.dir, &api, "h1");
        api.converge("h1").await;

        let (ia1, ic1, ia2, ic2) = (0, 1, 2, 3);
        let client1_flows: Vec<Flow> = vec![
            (ia1, 1, ic1, 1, addr(c1.v4, 22), true),
            (ia1, 1, ic1, 1, addr(c1.v6, 22), true),
            (ia2, 2, ic1, 1, addr(c1.v4, 22), false),
            (ia2, 2, ic1, 1, addr(c1.v6, 22), false),
            (ia1, 1, ic1, 1, addr(c1.v4, 80), true),
            (ia2, 2, ic1, 1, addr(c1.v4, 80), true),
            (ia1, 1, ic1, 1, addr(c1.v4, 8080), false),
            (ic1, 1, ia1, 1, addr(a1.v4, 80), true),
        ];
        let mut flows = client1_flows.clone();
        flows.extend([
            (ia2, 2, ic2, 2, addr(c2.v4, 22), true),
            (ia2, 2, ic2, 2, addr(c2.v6, 22), true),
            (ia1, 1, ic2, 2, addr(c2.v4, 22), false),
            (ia2, 2, ic2, 2, addr(c2.v4, 8080), false),
        ]);
        check_flows(lab, &api, "both clients", &flows).await;

        // Identical names and rules, never one chain: each group has its own chains and each rule
        // its own counter.
        let table = lab.nft("list table inet palisade");
        for web in [web1, web2] {
            assert!(table.contains(&format!("chain gi_{} {{", web.simple())), "{table}");
        }
        for (group, client) in [(web1, &one), (web2, &two)] {
            let (_, body) = client.tenant.call(Method::GET, &format!("/cloud/v1/securitygroups/1/1/{group}"), None).await;
            for r in body["security_group_rules"].as_array().unwrap() {
                assert_eq!(table.matches(&format!("comment \"rule {}\"", r["id"].as_str().unwrap())).count(), 1, "{table}");
            }
        }

        // Client 2 changes its rules, its bindings and its groups: client 1's flows and chains
        // stay exactly as they were.
        let client1_chains = [
            format!("gi_{}", web1.simple()),
            format!("ge_{}", web1.simple()),
            format!("gi_{}", clients1.simple()),
            format!("pi_{}", c1.port_id.simple()),
            format!("pe_{}", a1.port_id.simple()),
        ];
        let chains = || -> Vec<Vec<String>> {
            client1_chains.iter().map(|c| rules_with_handles(&lab.nft(&format!("-a list chain inet palisade {c}")))).collect()
        };
        let before = chains();
        let (_, body) = two.tenant.call(Method::GET, &format!("/cloud/v1/securitygroups/1/1/{web2}"), None).await;
        let ssh2 = body["security_group_rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["port_range_min"] == 22 && r["ethertype"] == "IPv4")
            .expect("client 2's ssh rule")["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        two.delete_rule(ssh2).await;
        two.add_rule(web2, ingress("IPv4", "tcp", 8080)).await;
        let extra = two.group("more", egress_all()).await;
        two.instance_group(c2, "clients", true).await;
        let (status, body) = api
            .platform
            .call(Method::PATCH, &format!("/palisade/v1/ports/{}", c2.port_id), Some(json!({"security_group_ids": [web2, extra]})))
            .await;
        Api::expect(status, 200, &body);
        api.converge("h1").await;
        assert_eq!(chains(), before, "client 2's changes rewrote a chain of client 1");
        let mut flows = client1_flows.clone();
        flows.extend([
            (ia2, 2, ic2, 2, addr(c2.v4, 22), false),
            (ia2, 2, ic2, 2, addr(c2.v6, 22), true),
            (ia2, 2, ic2, 2, addr(c2.v4, 8080), true),
            (ia1, 1, ic2, 2, addr(c2.v4, 8080), true),
        ]);
        check_flows(lab, &api, "after client 2's changes", &flows).await;

        // Legacy data: client 2's port names client 1's device. Neither port is enforced — no
        // last-wins: c1 is cut off both ways, and c2's own device, named by no port now, too.
        let db = rusqlite::Connection::open(lab.dir.join("palisade.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute("UPDATE ports SET device = ?1 WHERE id = ?2", rusqlite::params![c1.device, c2.port_id.hyphenated().to_string()])
            .unwrap();
        // An edit behind the service's back bumps nothing by itself: move h1's revision as a write
        // would; the server finds it within a second (its re-read of the waited hosts).
        bump_behind_the_back(&db, "h1");
        api.converge("h1").await;
        expect_all(
            "a device claimed twice",
            &[
                p("a1->c1 tcp 80", a1, Probe::Tcp(addr(c1.v4, 80)), false),
                p("c1->a1 tcp 80", c1, Probe::Tcp(addr(a1.v4, 80)), false),
                p("a2->c2 tcp 8080", a2, Probe::Tcp(addr(c2.v4, 8080)), false),
                p("a2->c1 tcp 80", a2, Probe::Tcp(addr(c1.v4, 80)), false),
            ],
        );
        let log = agent.log_text();
        assert!(log.contains("device claimed by several ports") && log.contains(&format!("device=\"{}\"", c1.device)), "{log}");
        assert!(log.contains(&c1.port_id.to_string()) && log.contains(&c2.port_id.to_string()), "{log}");
        let refused = lab.nft("list set inet palisade refused");
        assert!(refused.contains(&format!("\"{}\"", c1.device)), "{refused}");
        db.execute("UPDATE ports SET device = ?1 WHERE id = ?2", rusqlite::params![c2.device, c2.port_id.hyphenated().to_string()])
            .unwrap();
        bump_behind_the_back(&db, "h1");
        api.converge("h1").await;
        expect_all(
            "the claim withdrawn",
            &[p("a1->c1 tcp 80", a1, Probe::Tcp(addr(c1.v4, 80)), true), p("a2->c2 tcp 8080", a2, Probe::Tcp(addr(c2.v4, 8080)), true)],
        );
        drop(agent);
    });
}

/// What a write through the service does to a host it changes: a new revision from the counter.
fn bump_behind_the_back(db: &rusqlite::Connection, host: &str) {
    db.execute("UPDATE policy_revision SET revision = revision + 1 WHERE id = 1", []).unwrap();
    db.execute(
        "INSERT INTO host_revisions (host, revision) VALUES (?1, (SELECT revision FROM policy_revision WHERE id = 1))
         ON CONFLICT (host) DO UPDATE SET revision = max(host_revisions.revision + 1, excluded.revision)",
        [host],
    )
    .unwrap();
}

test_each_wiring!(
    a_revocation_made_while_the_agent_is_down_cuts_at_restart_routed,
    a_revocation_made_while_the_agent_is_down_cuts_at_restart_bridged => revocation_across_restart
);

/// An established connection, the agent killed (SIGKILL), its rule revoked, the agent started
/// again: the connection is cut within a second of the start, and one whose rule stays lives.
fn revocation_across_restart(wiring: Wiring) {
    let Some(lab) = Lab::if_can_run(wiring, &[2]) else { return };
    lab.run_with_api(&["h1"], async |lab, api| {
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let ClientAndWeb { open, agent, .. } = ClientAndWeb::set_up(lab, api, "h1", &[80, 8080]).await;
        let mut cut = tcp_connect(&a.ns, None, addr(c.v4, 80)).expect("tcp 80 is open");
        let mut kept = tcp_connect(&a.ns, None, addr(c.v4, 8080)).expect("tcp 8080 is open");

        agent.kill();
        api.delete_rule(open[0]).await;
        assert!(cut.echo("while the agent is down"), "nothing enforces the revocation while the agent is down");
        let started = Instant::now();
        let agent = AgentProcess::spawn(&lab.dir, &api, "h1");
        let entries = || lab.host.sh("conntrack -L -p tcp --dport 80 2>/dev/null");
        let mut gone = None;
        while started.elapsed() < Duration::from_secs(3) {
            if !entries().contains("dport=80") {
                gone = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone =
            gone.unwrap_or_else(|| panic!("the revoked connection's entry outlived the restart: {}\n{}", entries(), agent.log_text()));
        println!("{wiring:?}: the revoked connection's conntrack entry was deleted {} ms after the agent started", gone.as_millis());
        assert!(gone <= Duration::from_secs(1), "deleted only {gone:?} after the start");
        assert!(!cut.echo("after the restart"), "the revoked connection is cut");
        assert!(kept.echo("after the restart"), "a connection whose rule stays lives on");
        assert!(agent.log_text().contains("deleted conntrack entries the policy does not admit"), "{}", agent.log_text());
        drop(agent);
    });
}

/// The API down for 10 s: a change made right after it is back is in the kernel within a second.
#[test]
fn the_agent_catches_up_within_a_second_of_an_api_outage() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[2]) else { return };
    lab.run(async |lab| {
        let server = ServerProcess::start(&lab.dir).await;
        let api = Api::create(&lab.dir, 8080, &["h1"]);
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let ClientAndWeb { web, agent, .. } = ClientAndWeb::set_up(lab, &api, "h1", &[]).await;

        server.kill();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let server = ServerProcess::start(&lab.dir).await;
        let id = api.add_rule(web, ingress("IPv4", "tcp", 80)).await;
        let started = Instant::now();
        let chain = format!("list chain inet palisade gi_{}", web.simple());
        let mut applied = None;
        while started.elapsed() < Duration::from_secs(5) {
            if lab.nft(&chain).contains(&id.to_string()) {
                applied = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let applied = applied.unwrap_or_else(|| panic!("the change never reached the kernel: {}", agent.log_text()));
        println!("after a 10 s API outage, a change reached the kernel {} ms after it was made", applied.as_millis());
        assert!(applied <= Duration::from_secs(1), "{applied:?}: {}", agent.log_text());
        expect_all("the change", &[p("a->c tcp 80", a, Probe::Tcp(addr(c.v4, 80)), true)]);
        let log = agent.log_text();
        assert!(log.contains("the API is unreachable") && log.contains("the API is reachable again"), "{log}");
        server.kill();
    });
}

/// Two tenants' bridged networks on one host with the same addresses: a connection of one never
/// admits the other's packets. Client 1's y1 takes TCP 80 from anyone; client 2's y2, at the same
/// address on another bridge, takes nothing. With x1's connection to y1 established, x2 (x1's
/// address, on the other bridge) opens the same connection — same addresses, same ports — to
/// y2: each bridge has its own conntrack zone, so that is a new connection, refused.
#[test]
fn bridged_networks_with_the_same_addresses_never_share_a_connection() {
    let Some(lab) = Lab::if_can_run(Wiring::Bridged, &[2]) else { return };
    let twins = lab.overlapping_network(2);
    lab.run_with_api(&["h1"], async |lab, api| {
        let (one, two) = (api.as_client(1), api.as_client(2));
        let (x1, y1, x2, y2) = (&lab.instances[0], &lab.instances[1], &twins[0], &twins[1]);
        let open = one.group_with_egress("web", [ingress("IPv4", "tcp", 80)]).await;
        let clients1 = one.group("clients", egress_all()).await;
        let closed = two.group("web", egress_all()).await;
        let clients2 = two.group("clients", egress_all()).await;
        one.register(x1, "h1", &[clients1]).await;
        one.register(y1, "h1", &[open]).await;
        two.register(x2, "h1", &[clients2]).await;
        two.register(y2, "h1", &[closed]).await;
        tcp_echo_server(&y1.ns, addr(y1.v4, 80));
        tcp_echo_server(&y2.ns, addr(y2.v4, 80));
        let agent = AgentProcess::spawn(&lab.dir, &api, "h1");
        api.converge("h1").await;

        let source = addr(x1.v4, 40123);
        let mut first = tcp_connect_bound(&x1.ns, Some(source), addr(y1.v4, 80)).expect("x1 reaches y1 on tcp 80");
        let zones = lab.host.sh("conntrack -L -p tcp --dport 80 --sport 40123 2>/dev/null");
        assert!(zones.contains("ESTABLISHED") && zones.contains("zone="), "the connection is tracked in its bridge's zone: {zones}");
        assert!(tcp_connect_bound(&x2.ns, Some(source), addr(y2.v4, 80)).is_none(), "the other network's twin connection is refused");
        assert!(first.echo("still there"), "and the first connection is untouched");
        let bridged = lab.host.sh("ip -j link show type bridge");
        assert!(bridged.contains("brlab2"), "{bridged}");
        assert!(agent.log_text().contains("bridge=\"brlab2\""), "{}", agent.log_text());
        drop(agent);
    });
}
