//! `palisade agent`: the host agent's flags and wiring (the agent itself is `palisade_dataplane`).

use clap::Args;
use palisade_dataplane::agent::{Agent, AgentConfig, Enforcement, Observation};
use palisade_dataplane::apply::Tools;
use palisade_dataplane::host::Mode;

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Base URL of the Palisade API, e.g. `http://127.0.0.1:8080` or `https://palisade.example:8443`.
    #[arg(long, env = "PALISADE_API")]
    pub api: String,
    /// CA certificate(s) (PEM) that the API's HTTPS certificate must chain to (instead of the
    /// platform's roots), e.g. the CA of a self-signed `serve --tls-cert`.
    #[arg(long, env = "PALISADE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// This host's name, as ports are registered with it.
    #[arg(long, env = "PALISADE_AGENT_HOST")]
    pub host: String,
    /// The agent key of this host (`palisade keys create --role agent --host NAME`).
    #[arg(long, env = "PALISADE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Seconds one long-poll may wait for a change.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
    /// The `nft` binary.
    #[arg(long, default_value = "nft")]
    pub nft: String,
    /// The `conntrack` binary.
    #[arg(long, default_value = "conntrack")]
    pub conntrack: String,
    /// The `ip` binary (iproute2), which lists and watches the host's links.
    #[arg(long, default_value = "ip")]
    pub ip: String,
    /// How port devices are attached: `routed` (the host routes to them), `bridged` (they are
    /// ports of Linux bridges) or `auto` (found per device). A port attached otherwise than the
    /// mode says is dropped, never left unfiltered.
    #[arg(long, env = "PALISADE_AGENT_MODE", default_value = "auto")]
    pub mode: Mode,
    /// Devices with this prefix that are not ports of this host are dropped both ways (Neutron
    /// names port devices `tap…`); an empty prefix turns that off.
    #[arg(long, env = "PALISADE_PORT_DEVICE_PREFIX", default_value = "tap")]
    pub port_device_prefix: String,
    /// Seconds between two reports of rule hit counts (deltas) to the API.
    #[arg(long, env = "PALISADE_STATS_INTERVAL", default_value_t = 10)]
    pub stats_interval: u64,
    /// Seconds between two posts of flow-log records (at most 15).
    #[arg(long, default_value_t = 10)]
    pub flow_log_interval: u64,
    /// The NFLOG group the tables log to and the agent reads.
    #[arg(long, default_value_t = 2701)]
    pub flow_log_group: u16,
    /// Logged packets per second per port, beyond which packets are enforced but not logged.
    #[arg(long, default_value_t = 100)]
    pub flow_log_rate: u32,
    /// Log format.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, ignore_case = true, default_value_t)]
    pub log_format: crate::config::LogFormat,
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    crate::init_logging(args.log_format);
    if !palisade_core::port::valid_host(&args.host) {
        anyhow::bail!("--host {:?} is not a valid host name", args.host);
    }
    let prefix = &args.port_device_prefix;
    if !prefix.is_empty() && (prefix.len() > 14 || !palisade_core::port::valid_device(prefix)) {
        anyhow::bail!("--port-device-prefix {prefix:?} is not the start of an interface name");
    }
    let config = AgentConfig {
        api: args.api,
        host: args.host,
        api_key: args.api_key,
        wait: args.wait.clamp(1, 300),
        tools: Tools { nft: args.nft, conntrack: args.conntrack, ip: args.ip },
        ca_cert: args.ca_cert,
    };
    let enforcement = Enforcement { mode: args.mode, port_device_prefix: args.port_device_prefix };
    let observation = Observation {
        stats_interval: std::time::Duration::from_secs(args.stats_interval.clamp(1, 3600)),
        flow_log_interval: std::time::Duration::from_secs(args.flow_log_interval.clamp(1, 15)),
        flow_log: palisade_dataplane::nft::FlowLogLimits {
            group: args.flow_log_group,
            rate: args.flow_log_rate.clamp(1, 100_000),
            ..Default::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        Agent::new(config)?.with_enforcement(enforcement).with_observation(observation).run(crate::startup::shutdown_signal()).await
    })
}
