//! Configuration: defaults, then an optional TOML file, then `PALISADE_*` variables, then flags
//! (clap reads flags and variables together; either beats the file).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use palisade_api::ApiConfig;
use palisade_core::RuleSpec;
use serde::{Deserialize, Deserializer};

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// SQLite's `synchronous` mode (a PostgreSQL database ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SqliteSynchronous {
    /// Survives process crashes (WAL).
    #[default]
    Normal,
    /// Also survives power loss.
    Full,
    /// As SQLite defines it; in WAL mode the same as `full`.
    Extra,
}

impl SqliteSynchronous {
    /// The pragma's value, as the store takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "normal",
            SqliteSynchronous::Full => "full",
            SqliteSynchronous::Extra => "extra",
        }
    }
}

/// A file value of a [`ValueEnum`], spelled as on the command line (in any case).
fn value_enum<'de, D: Deserializer<'de>, T: ValueEnum>(deserializer: D) -> Result<Option<T>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    T::from_str(&text, true).map(Some).map_err(|_| {
        let names: Vec<String> = T::value_variants().iter().filter_map(T::to_possible_value).map(|v| v.get_name().to_owned()).collect();
        serde::de::Error::custom(format!("{text:?} is not one of {}", names.join(", ")))
    })
}

/// The options of every command that opens the database (`serve`, `migrate`, `keys`, `export`,
/// `import`); after the subcommand, or through their variables or the file.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// TOML configuration file.
    #[arg(long, env = "PALISADE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded SQLite database (default `palisade-data`).
    #[arg(long, env = "PALISADE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite:PATH` (default `sqlite:<data-dir>/palisade.db`) or `postgres://...`.
    #[arg(long, env = "PALISADE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// SQLite `synchronous` mode (default `normal`).
    #[arg(long, env = "PALISADE_SQLITE_SYNCHRONOUS", global = true, value_enum, ignore_case = true)]
    pub sqlite_synchronous: Option<SqliteSynchronous>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on (default `127.0.0.1:8080`).
    #[arg(long, env = "PALISADE_LISTEN")]
    pub listen: Option<String>,
    /// Log format (default `text`).
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, ignore_case = true)]
    pub log_format: Option<LogFormat>,
    /// Refuse region ids that the configuration does not name.
    #[arg(long, env = "PALISADE_STRICT_REGIONS")]
    pub strict_regions: Option<bool>,
    /// On the embedded store, how long a v2 write waits for its task before answering (ms), so a
    /// client's first poll finds it finished; 0 answers at once.
    #[arg(long, env = "PALISADE_TASK_WAIT_MS")]
    pub task_wait_ms: Option<u64>,
    /// How long a request's large work (verdicts, big list pages, policy builds) may take, in ms,
    /// before it answers 504 (default 5000).
    #[arg(long, env = "PALISADE_REQUEST_DEADLINE_MS")]
    pub request_deadline_ms: Option<u64>,
    /// Do not create and print an API key when the database has none.
    #[arg(long, env = "PALISADE_NO_BOOTSTRAP_KEY")]
    pub no_bootstrap_key: bool,
    /// Do not apply pending PostgreSQL migrations at start (run `palisade migrate` first);
    /// refuse to start when the schema is behind.
    #[arg(long, env = "PALISADE_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Serve `GET /metrics` (Prometheus) on this separate address, e.g. `127.0.0.1:9090`
    /// (default: metrics are not served).
    #[arg(long, env = "PALISADE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Days audit events are kept before pruning (default 90; 0 keeps them forever).
    #[arg(long, env = "PALISADE_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Serve the API over HTTPS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "PALISADE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "PALISADE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request's headers once it started (default 10).
    #[arg(long, env = "PALISADE_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a client has to send a request's body (default 30): 408 beyond.
    #[arg(long, env = "PALISADE_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request (default 60).
    #[arg(long, env = "PALISADE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Open connections at most; new ones beyond are closed at once (default: 3/4 of the
    /// process's file descriptor limit, at most 10,000).
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM before their connections are
    /// closed (default 30); long-polls answer at once.
    #[arg(long, env = "PALISADE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Reads per second per API key (token bucket; bursts of twice as many); 0 turns the limit off.
    #[arg(long, env = "PALISADE_RATE_LIMIT_READS")]
    pub rate_limit_reads: Option<u32>,
    /// Writes per second per API key (token bucket; bursts of twice as many); 0 turns the limit off.
    #[arg(long, env = "PALISADE_RATE_LIMIT_WRITES")]
    pub rate_limit_writes: Option<u32>,
    /// Days finished tasks are kept (default 7; acknowledged ones 1 day); 0 keeps them forever.
    #[arg(long, env = "PALISADE_TASK_RETENTION_DAYS")]
    pub task_retention_days: Option<u32>,
    /// Unfinished tasks one client may have at once (default 1,000): 429 beyond.
    #[arg(long, env = "PALISADE_MAX_TASKS_PER_CLIENT")]
    pub max_tasks_per_client: Option<u32>,
    /// The largest request body in bytes (default 1 MiB): 413 beyond, unread.
    #[arg(long, env = "PALISADE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Flow-log records one client keeps (default 100,000); beyond it the oldest go first.
    #[arg(long, env = "PALISADE_FLOW_LOG_MAX_RECORDS_PER_CLIENT")]
    pub flow_log_max_records_per_client: Option<u64>,
    /// Hours flow-log records are kept (default 24); 0 keeps them until the cap pushes them out.
    #[arg(long, env = "PALISADE_FLOW_LOG_RETENTION_HOURS")]
    pub flow_log_retention_hours: Option<u32>,
}

/// The smallest `max_body_bytes` accepted.
pub const MIN_BODY_BYTES: usize = 1024;

/// How long audit events are kept unless configured.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 90;

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    #[serde(default, deserialize_with = "value_enum")]
    pub sqlite_synchronous: Option<SqliteSynchronous>,
    #[serde(default, deserialize_with = "value_enum")]
    pub log_format: Option<LogFormat>,
    pub strict_regions: Option<bool>,
    pub task_wait_ms: Option<u64>,
    pub request_deadline_ms: Option<u64>,
    pub metrics_listen: Option<String>,
    pub audit_retention_days: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub header_timeout: Option<u64>,
    pub body_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Option<u64>,
    pub rate_limit_reads: Option<u32>,
    pub rate_limit_writes: Option<u32>,
    pub task_retention_days: Option<u32>,
    pub max_tasks_per_client: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub flow_log_max_records_per_client: Option<u64>,
    pub flow_log_retention_hours: Option<u32>,
    /// Region id (as a string key) -> display name.
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
    /// Rules of new groups created without `rules`, in the API's rule-input form.
    pub default_rules: Option<Vec<toml::Value>>,
    /// Default quotas per project and region (-1: unlimited).
    pub quotas: Option<QuotaConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub security_group_count: Option<i64>,
    pub security_group_rule_count: Option<i64>,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub sqlite_synchronous: SqliteSynchronous,
    pub log_format: LogFormat,
    pub bootstrap_key: bool,
    pub api: ApiConfig,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<String>,
    /// Days audit events are kept; 0: forever.
    pub audit_retention_days: u32,
    /// Serve the API over HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// What one connection may take (timeouts, how many at once, the shutdown deadline).
    pub connections: ConnectionLimits,
    /// Days finished tasks are kept (acknowledged ones at most a day); 0: forever.
    pub task_retention_days: u32,
}

/// Limits of the HTTP server's connections (`crate::server`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// For reading a request's body.
    pub body_timeout: Duration,
    /// For a kept-alive connection to start its next request.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// After SIGTERM, how long in-flight requests may still run.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// 3/4 of the soft limit on open files (the rest stays for the database, logs and the
/// listener), at most 10,000: beyond, new connections are refused at once instead of failing
/// `accept` for everyone.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one plain struct we own.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur as usize } else { 1024 };
    (soft / 4 * 3).clamp(64, 10_000)
}

/// How long finished tasks are kept unless configured.
pub const DEFAULT_TASK_RETENTION_DAYS: u32 = 7;

/// The PEM files of the API's TLS certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read_file(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn default_rules(values: &[toml::Value]) -> anyhow::Result<Vec<RuleSpec>> {
    let mut specs = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let json = serde_json::to_value(value)?;
        let draft = palisade_core::input::parse_rule_lenient(&json, &format!("default_rules.{i}"))
            .map_err(|e| anyhow::anyhow!("invalid default rule: {e}"))?;
        specs.push(draft.normalize().map_err(|e| anyhow::anyhow!("default_rules.{i}: {e}"))?);
    }
    Ok(palisade_core::rule::dedupe(specs))
}

impl Config {
    pub fn resolve(db: &DbArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Config> {
        let file = read_file(db.config.as_ref())?;
        let data_dir = db.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("palisade-data"));
        let database_url =
            db.database_url.clone().or(file.database_url).unwrap_or_else(|| format!("sqlite:{}", data_dir.join("palisade.db").display()));
        let mut regions = BTreeMap::new();
        for (id, name) in file.regions {
            let id: i64 = id.parse().with_context(|| format!("region id {id:?} in the configuration is not an integer"))?;
            regions.insert(id, name);
        }
        let log_format = serve.and_then(|s| s.log_format).or(file.log_format).unwrap_or_default();
        let tls_cert = serve.and_then(|s| s.tls_cert.clone()).or(file.tls_cert);
        let tls_key = serve.and_then(|s| s.tls_key.clone()).or(file.tls_key);
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key (PALISADE_TLS_KEY, tls_key): give both or neither"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (PALISADE_TLS_CERT, tls_cert): give both or neither"),
        };
        let seconds = |flag: Option<u64>, file: Option<u64>, default: Duration| flag.or(file).map(Duration::from_secs).unwrap_or(default);
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_timeout: seconds(serve.and_then(|s| s.header_timeout), file.header_timeout, defaults.header_timeout),
            body_timeout: seconds(serve.and_then(|s| s.body_timeout), file.body_timeout, defaults.body_timeout),
            idle_timeout: seconds(serve.and_then(|s| s.idle_timeout), file.idle_timeout, defaults.idle_timeout),
            max_connections: serve.and_then(|s| s.max_connections).or(file.max_connections).unwrap_or(defaults.max_connections),
            shutdown_timeout: seconds(serve.and_then(|s| s.shutdown_timeout), file.shutdown_timeout, defaults.shutdown_timeout),
        };
        if connections.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        let api_defaults = ApiConfig::default();
        let max_body_bytes = serve.and_then(|s| s.max_body_bytes).or(file.max_body_bytes).unwrap_or(api_defaults.max_body_bytes);
        if max_body_bytes < MIN_BODY_BYTES {
            bail!("max_body_bytes must be at least {MIN_BODY_BYTES} (the official clients' bodies must fit)");
        }
        Ok(Config {
            connections,
            task_retention_days: serve
                .and_then(|s| s.task_retention_days)
                .or(file.task_retention_days)
                .unwrap_or(DEFAULT_TASK_RETENTION_DAYS),
            metrics_listen: serve.and_then(|s| s.metrics_listen.clone()).or(file.metrics_listen).filter(|a| !a.is_empty()),
            audit_retention_days: serve
                .and_then(|s| s.audit_retention_days)
                .or(file.audit_retention_days)
                .unwrap_or(DEFAULT_AUDIT_RETENTION_DAYS),
            tls,
            listen: serve.and_then(|s| s.listen.clone()).or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            database_url,
            sqlite_synchronous: db.sqlite_synchronous.or(file.sqlite_synchronous).unwrap_or_default(),
            log_format,
            bootstrap_key: !serve.is_some_and(|s| s.no_bootstrap_key),
            api: ApiConfig {
                regions,
                strict_regions: serve.and_then(|s| s.strict_regions).or(file.strict_regions).unwrap_or(false),
                default_rules: match file.default_rules {
                    Some(values) => default_rules(&values)?,
                    None => palisade_core::rule::default_template(),
                },
                default_quotas: {
                    let defaults = palisade_core::quota::Limits::default();
                    let quotas = file.quotas.unwrap_or_default();
                    palisade_core::quota::Limits {
                        security_groups: quotas.security_group_count.unwrap_or(defaults.security_groups),
                        security_group_rules: quotas.security_group_rule_count.unwrap_or(defaults.security_group_rules),
                    }
                },
                task_wait: std::time::Duration::from_millis(
                    serve.and_then(|s| s.task_wait_ms).or(file.task_wait_ms).unwrap_or(ApiConfig::default().task_wait.as_millis() as u64),
                ),
                rate_limit_reads: serve.and_then(|s| s.rate_limit_reads).or(file.rate_limit_reads).unwrap_or(api_defaults.rate_limit_reads),
                rate_limit_writes: serve
                    .and_then(|s| s.rate_limit_writes)
                    .or(file.rate_limit_writes)
                    .unwrap_or(api_defaults.rate_limit_writes),
                max_tasks_per_client: serve
                    .and_then(|s| s.max_tasks_per_client)
                    .or(file.max_tasks_per_client)
                    .unwrap_or(api_defaults.max_tasks_per_client),
                max_body_bytes,
                flow_log_max_records_per_client: serve
                    .and_then(|s| s.flow_log_max_records_per_client)
                    .or(file.flow_log_max_records_per_client)
                    .unwrap_or(api_defaults.flow_log_max_records_per_client),
                flow_log_retention_hours: serve
                    .and_then(|s| s.flow_log_retention_hours)
                    .or(file.flow_log_retention_hours)
                    .unwrap_or(api_defaults.flow_log_retention_hours),
                request_deadline: match serve.and_then(|s| s.request_deadline_ms).or(file.request_deadline_ms) {
                    Some(0) => bail!("request_deadline_ms must be at least 1"),
                    Some(ms) => Duration::from_millis(ms),
                    None => api_defaults.request_deadline,
                },
                ..ApiConfig::default()
            },
        })
    }
}
