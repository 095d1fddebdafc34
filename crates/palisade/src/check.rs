//! `palisade check`: the verdict and analysis endpoints from a terminal, as text or JSON.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Base URL of a Palisade API.
    #[arg(long, env = "PALISADE_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// API key (the token `palisade keys create` printed).
    #[arg(long, env = "PALISADE_API_KEY")]
    pub api_key: String,
    /// CA certificate(s) (PEM) that an `https://` API's certificate must chain to (instead of the
    /// platform's roots).
    #[arg(long, env = "PALISADE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub what: CheckCommand,
}

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Would this flow be allowed, and which rule decides? Exits 3 when denied with --fail-on-deny.
    Flow {
        /// The port whose groups apply.
        #[arg(long, conflicts_with = "groups")]
        port_id: Option<String>,
        /// Or these groups (comma-separated ids), in order.
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// `ingress` (to the port) or `egress` (from it).
        #[arg(long)]
        direction: String,
        /// The other end: source of ingress, destination of egress.
        #[arg(long)]
        remote_ip: String,
        /// Protocol name or number.
        #[arg(long)]
        protocol: String,
        /// Destination port (TCP, UDP, SCTP, DCCP, UDP-Lite).
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        icmp_type: Option<u8>,
        #[arg(long)]
        icmp_code: Option<u8>,
        /// Ask about a packet of an established connection.
        #[arg(long)]
        established: bool,
        #[arg(long)]
        fail_on_deny: bool,
    },
    /// Shadowed, duplicate and overly broad rules, and empty remote groups, of one group.
    Analysis {
        #[arg(long)]
        project: i64,
        #[arg(long)]
        region: i64,
        #[arg(long)]
        group: String,
    },
    /// The merged rules of every group on a port.
    Effective {
        #[arg(long)]
        port_id: String,
    },
    /// Which flows seen in the flow logs a proposed rule set would newly deny or allow.
    /// Exits 3 when it would deny a seen flow with --fail-on-deny.
    Impact {
        /// The security group to change.
        #[arg(long)]
        group: String,
        /// A JSON file: the desired rules (as in a v2 PATCH), a list or `{"rules": [...]}`.
        #[arg(long)]
        rules: std::path::PathBuf,
        /// How far back to look, in minutes (1 to 1440; default 60).
        #[arg(long)]
        minutes: Option<u32>,
        #[arg(long)]
        fail_on_deny: bool,
    },
}

/// One flow of an impact answer, as a line: `tcp 192.0.2.1:40000 -> 10.0.0.5:22 ingress (rule X)`.
fn impact_line(flow: &Value, rule_key: &str) -> String {
    let end = |addr: &str, port: &str| match flow[port].as_u64() {
        Some(p) => format!("{}:{p}", flow[addr].as_str().unwrap_or("?")),
        None => flow[addr].as_str().unwrap_or("?").to_string(),
    };
    let rule = &flow[rule_key];
    let rule = match (rule["rule_id"].as_str(), rule["proposed"].as_bool()) {
        (Some(id), _) => format!("rule {id}"),
        (None, Some(true)) => "a proposed rule".to_string(),
        _ => "no rule".to_string(),
    };
    format!(
        "protocol {} {} -> {} {} ({rule})",
        flow["protocol"],
        end("src_addr", "src_port"),
        end("dst_addr", "dst_port"),
        flow["direction"].as_str().unwrap_or_default()
    )
}

async fn call(args: &CheckArgs, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let url = format!("{}{}", args.api.trim_end_matches('/'), path);
    let client = palisade_dataplane::agent::http_client(args.ca_cert.as_deref())?;
    let mut request = client.request(method, &url).header("Authorization", format!("APIKey {}", args.api_key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("{status}: {}", body["message"].as_str().unwrap_or("no message"));
    }
    Ok(body)
}

/// Runs the check; returns the process exit code.
pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match &args.what {
            CheckCommand::Flow {
                port_id,
                groups,
                direction,
                remote_ip,
                protocol,
                port,
                icmp_type,
                icmp_code,
                established,
                fail_on_deny,
            } => {
                let protocol_value = protocol.parse::<u8>().map(Value::from).unwrap_or_else(|_| Value::from(protocol.as_str()));
                let mut question = json!({"direction": direction, "remote_ip": remote_ip, "protocol": protocol_value,
                    "port": port, "icmp_type": icmp_type, "icmp_code": icmp_code, "established": established});
                match (port_id, groups) {
                    (Some(port_id), _) => question["port_id"] = json!(port_id),
                    (None, Some(groups)) => question["security_group_ids"] = json!(groups),
                    (None, None) => bail!("give --port-id or --groups"),
                }
                let answer = call(&args, reqwest::Method::POST, "/palisade/v1/verdicts", Some(question)).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                } else {
                    let what = match (port, icmp_type) {
                        (Some(p), _) => format!("{protocol} port {p}"),
                        (None, Some(t)) => format!("{protocol} type {t}{}", icmp_code.map(|c| format!(" code {c}")).unwrap_or_default()),
                        _ => protocol.clone(),
                    };
                    let arrow = if direction == "ingress" { "from" } else { "to" };
                    println!(
                        "{} {direction} {what} {arrow} {remote_ip} ({} connection): {}",
                        answer["verdict"].as_str().unwrap_or("?").to_uppercase(),
                        answer["connection"].as_str().unwrap_or("new"),
                        answer["reason"].as_str().unwrap_or_default()
                    );
                }
                Ok(if *fail_on_deny && answer["allowed"] != json!(true) { 3 } else { 0 })
            }
            CheckCommand::Analysis { project, region, group } => {
                let report =
                    call(&args, reqwest::Method::GET, &format!("/cloud/v1/securitygroups/{project}/{region}/{group}/analysis"), None)
                        .await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    let findings = report["findings"].as_array().cloned().unwrap_or_default();
                    println!("security group {group}: {} rules, {} findings", report["rule_count"], findings.len());
                    for finding in findings {
                        let detail = match finding["kind"].as_str().unwrap_or_default() {
                            "duplicate" => format!("duplicates rule {}", finding["same_as"].as_str().unwrap_or_default()),
                            "shadowed" => format!("is covered by rule {}", finding["covered_by"].as_str().unwrap_or_default()),
                            "overly_broad" | "unmatchable" => finding["reason"].as_str().unwrap_or_default().to_string(),
                            "empty_remote_group" => {
                                format!(
                                    "names remote group {} which has no members",
                                    finding["remote_group_id"].as_str().unwrap_or_default()
                                )
                            }
                            "unused" => match finding["last_hit_at"].as_str() {
                                Some(at) => format!("has had no hit since {at}"),
                                None => "has never had a hit".to_string(),
                            },
                            other => other.to_string(),
                        };
                        println!(
                            "  {:<20} rule {} {detail}",
                            finding["kind"].as_str().unwrap_or_default(),
                            finding["rule_id"].as_str().unwrap_or_default()
                        );
                    }
                }
                Ok(0)
            }
            CheckCommand::Effective { port_id } => {
                let effective = call(&args, reqwest::Method::GET, &format!("/palisade/v1/ports/{port_id}/effective-rules"), None).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&effective)?);
                } else {
                    println!("port {port_id}: default {}, stateful", effective["default_action"].as_str().unwrap_or("drop"));
                    for direction in ["ingress", "egress"] {
                        for rule in effective[direction].as_array().cloned().unwrap_or_default() {
                            let remote = rule["remote_ip_prefix"]
                                .as_str()
                                .map(str::to_owned)
                                .or_else(|| rule["remote_group_id"].as_str().map(|g| format!("group {g}")))
                                .unwrap_or_else(|| "anywhere".into());
                            let ports = match (rule["port_range_min"].as_u64(), rule["port_range_max"].as_u64()) {
                                (Some(a), Some(b)) if a == b => format!(" {a}"),
                                (Some(a), Some(b)) => format!(" {a}-{b}"),
                                (Some(a), None) => format!(" {a}"),
                                _ => String::new(),
                            };
                            println!(
                                "  {direction:<7} {} {}{ports} {} {remote}  [{}: {}]",
                                rule["ethertype"].as_str().unwrap_or_default(),
                                rule["protocol"].as_str().unwrap_or("any"),
                                if direction == "ingress" { "from" } else { "to" },
                                rule["security_group_name"].as_str().unwrap_or_default(),
                                rule["id"].as_str().unwrap_or_default()
                            );
                        }
                    }
                }
                Ok(0)
            }
            CheckCommand::Impact { group, rules, minutes, fail_on_deny } => {
                let text = std::fs::read_to_string(rules).with_context(|| format!("reading {}", rules.display()))?;
                let parsed: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", rules.display()))?;
                let mut body = if parsed.is_array() { json!({"rules": parsed}) } else { parsed };
                if let Some(minutes) = minutes {
                    body["minutes"] = json!(minutes);
                }
                let answer =
                    call(&args, reqwest::Method::POST, &format!("/palisade/v1/security_groups/{group}/impact"), Some(body)).await?;
                let ports = answer["ports"].as_array().cloned().unwrap_or_default();
                let denied: usize = ports.iter().map(|p| p["newly_denied"].as_array().map_or(0, Vec::len)).sum();
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                } else {
                    println!(
                        "security group {group}: {} flows seen in the last {} minutes",
                        answer["flows_considered"], answer["window_minutes"]
                    );
                    for port in &ports {
                        for (list, verb, key) in [("newly_denied", "DENIED ", "rule_before"), ("newly_allowed", "ALLOWED", "rule_after")] {
                            for flow in port[list].as_array().cloned().unwrap_or_default() {
                                println!(
                                    "  port {} newly {verb} {}",
                                    port["port_id"].as_str().unwrap_or_default(),
                                    impact_line(&flow, key)
                                );
                            }
                        }
                    }
                    if ports.iter().all(|p| {
                        p["newly_denied"].as_array().is_none_or(Vec::is_empty) && p["newly_allowed"].as_array().is_none_or(Vec::is_empty)
                    }) {
                        println!("  no seen flow changes its verdict");
                    }
                }
                Ok(if *fail_on_deny && denied > 0 { 3 } else { 0 })
            }
        }
    })
}
