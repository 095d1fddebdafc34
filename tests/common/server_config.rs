//! The configuration of a Palisade that a test harness starts in-process (tests/api/helpers.rs,
//! crates/palisade/tests/dataplane/lab.rs): every setting at its default but the listener and the
//! database, and no bootstrap key (the harness makes the keys it needs).

use palisade::config::{Config, ConnectionLimits, DEFAULT_AUDIT_RETENTION_DAYS, DEFAULT_TASK_RETENTION_DAYS, LogFormat, SqliteSynchronous};
use palisade_api::ApiConfig;

pub fn server_config(listen: &str, database_url: String) -> Config {
    Config {
        listen: listen.into(),
        database_url,
        sqlite_synchronous: SqliteSynchronous::Normal,
        log_format: LogFormat::Text,
        bootstrap_key: false,
        api: ApiConfig::default(),
        metrics_listen: None,
        audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
        tls: None,
        connections: ConnectionLimits::default(),
        task_retention_days: DEFAULT_TASK_RETENTION_DAYS,
    }
}
