//! `palisade`: the security-group service and its tools.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade::config::{Config, DbArgs, LogFormat, ServeArgs};
use palisade::startup::{Application, KeySpec, create_api_key, shutdown_signal};
use palisade_store::transfer::Summary;
use palisade_store::{Database, KeyRole, Store};

#[derive(Parser)]
#[command(name = "palisade", version, about = "A security-group service that speaks the Gcore Cloud API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (and run the task worker).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage API keys.
    Keys {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Write every group, rule, tag, task, API key and quota as JSON lines (to move a database).
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// The file to write (`-` for standard output).
        #[arg(long)]
        output: PathBuf,
    },
    /// Load a `palisade export` file into an empty database, all or nothing.
    Import {
        #[command(flatten)]
        db: DbArgs,
        /// The file to read (`-` for standard input).
        #[arg(long)]
        input: PathBuf,
    },
    /// Run the host agent: enforce the groups of this host's ports with nftables.
    Agent(palisade::agent::AgentArgs),
    /// Ask a running API about flows, rules and groups.
    Check(palisade::check::CheckArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Tenant,
    Platform,
    Agent,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its token (the last line of output).
    Create {
        /// tenant: one client's Gcore API; platform: the operator's control plane (ports, quotas,
        /// agents, every client's audit log); agent: one host's agent (docs/security.md).
        #[arg(long, value_enum, default_value_t = RoleArg::Tenant)]
        role: RoleArg,
        /// The tenant key's client (default 1).
        #[arg(long)]
        client_id: Option<i64>,
        /// The tenant key's user (default 1).
        #[arg(long)]
        user_id: Option<i64>,
        /// Comma-separated project ids a tenant key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        projects: Option<Vec<i64>>,
        /// The host an agent key speaks for (its `palisade agent --host`).
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (never their tokens).
    List,
    /// Revoke a key by id.
    Revoke { id: i64 },
}

fn open(db: &DbArgs) -> anyhow::Result<Database> {
    let config = Config::resolve(db, None)?;
    Database::open(&config.database_url, config.sqlite_synchronous.as_str()).with_context(|| format!("opening {}", config.database_url))
}

/// `export`'s output: the file, or standard output for `-`.
fn writer(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufWriter::new(std::io::stdout().lock())));
    }
    Ok(Box::new(BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)))
}

/// `import`'s input: the file, or standard input for `-`.
fn reader(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin().lock())));
    }
    Ok(Box::new(BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)))
}

/// The line `export` and `import` end with, e.g. `exported 2 groups, … from sqlite`.
fn report(done: &str, summary: &Summary, direction: &str, backend: &str) {
    let Summary { groups, rules, tags, tasks, api_keys, quotas, .. } = summary;
    eprintln!(
        "{done} {groups} groups, {rules} rules, {tags} tags, {tasks} tasks, {api_keys} API keys, {quotas} quotas {direction} {backend}"
    );
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(serve) => {
            let config = Config::resolve(&serve.db, Some(&serve))?;
            palisade::init_logging(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let app = Application::build_with(config, !serve.no_migrate).await?;
                app.run_until_stopped(shutdown_signal()).await
            })
        }
        Command::Migrate { db } => {
            palisade::init_logging(LogFormat::Text);
            let store = open(&db)?;
            println!("database is at the latest schema ({})", store.backend());
            Ok(())
        }
        Command::Keys { db, command } => {
            let store = open(&db)?;
            match command {
                KeysCommand::Create { role, client_id, user_id, projects, host, name } => {
                    let spec = match role {
                        RoleArg::Tenant => {
                            let mut spec = KeySpec::tenant(client_id.unwrap_or(1), user_id.unwrap_or(1), projects, &name);
                            spec.host = host;
                            spec
                        }
                        RoleArg::Platform | RoleArg::Agent => KeySpec {
                            role: if matches!(role, RoleArg::Platform) { KeyRole::Platform } else { KeyRole::Agent },
                            client_id: client_id.unwrap_or(0),
                            user_id: user_id.unwrap_or(0),
                            projects,
                            host,
                            name,
                        },
                    };
                    let token = create_api_key(&store, &spec)?;
                    println!("{token}");
                }
                KeysCommand::List => {
                    for key in store.read(|tx| tx.list_keys())? {
                        let state = if key.revoked_at.is_some() { "revoked" } else { "active" };
                        let whom = match key.role {
                            KeyRole::Tenant => {
                                let projects = key.projects.map(|p| format!("{p:?}")).unwrap_or_else(|| "all".into());
                                format!("client={}\tuser={}\tprojects={projects}", key.client_id, key.user_id)
                            }
                            KeyRole::Platform => "every client".to_string(),
                            KeyRole::Agent => format!("host={}", key.host.unwrap_or_default()),
                        };
                        println!("{}\trole={}\t{whom}\t{state}\t{}", key.id, key.role.as_str(), key.name);
                    }
                }
                KeysCommand::Revoke { id } => {
                    let revoked = palisade::startup::revoke_api_key(&store, id)?;
                    if !revoked {
                        anyhow::bail!("no active key with id {id}");
                    }
                    println!("revoked key {id}");
                }
            }
            Ok(())
        }
        Command::Agent(args) => palisade::agent::run(args),
        Command::Check(args) => {
            let code = palisade::check::run(args)?;
            std::process::exit(code);
        }
        Command::Export { db, output } => {
            let store = open(&db)?;
            let summary = palisade_store::transfer::export(&store, store.backend(), &mut writer(&output)?)?;
            report("exported", &summary, "from", store.backend());
            Ok(())
        }
        Command::Import { db, input } => {
            let store = open(&db)?;
            let summary = palisade_store::transfer::import(&store, &mut reader(&input)?)?;
            report("imported", &summary, "into", store.backend());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&palisade_api::openapi::document())?);
            Ok(())
        }
    }
}
