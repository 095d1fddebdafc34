//! The `palisade` binary's wiring, as a library so black-box tests can start the service
//! in-process. No domain logic lives here.

pub mod agent;
pub mod check;
pub mod config;
pub mod server;
pub mod startup;
pub mod tls;

/// Logs to stderr as text or JSON; `RUST_LOG` filters (default `info`). Colours only when stderr
/// is a terminal, so a redirected log file holds no escape sequences.
pub fn init_logging(format: config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
