//! `palisade`: the security-group service and its tools.

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade::config::{Config, DbArgs, ServeArgs};
use palisade::startup::{Application, KeySpec, create_api_key, shutdown_signal};
use palisade_store::{Database, KeyRole, Store};

#[derive(Parser)]
#[command(name = "palisade", version, about = "A security-group service that speaks the Gcore Cloud API")]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (and run the task worker).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Write every group, rule, tag, task, API key and quota as JSON lines (to move a database).
    Export {
        /// The file to write (`-` for standard output).
        #[arg(long)]
        output: std::path::PathBuf,
    },
    /// Load a `palisade export` file into an empty database, all or nothing.
    Import {
        /// The file to read (`-` for standard input).
        #[arg(long)]
        input: std::path::PathBuf,
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
    Database::open(&config.database_url, &config.sqlite_synchronous).with_context(|| format!("opening {}", config.database_url))
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(serve) => {
            let config = Config::resolve(&cli.db, Some(&serve))?;
            palisade::init_logging(&config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let app = Application::build_with(config, !serve.no_migrate).await?;
                app.run_until_stopped(shutdown_signal()).await
            })
        }
        Command::Migrate => {
            palisade::init_logging("text");
            let store = open(&cli.db)?;
            println!("database is at the latest schema ({})", store.backend());
            Ok(())
        }
        Command::Keys { command } => {
            let store = open(&cli.db)?;
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
        Command::Export { output } => {
            let store = open(&cli.db)?;
            let mut out: Box<dyn std::io::Write> = if output.as_os_str() == "-" {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                let file = std::fs::File::create(&output).with_context(|| format!("creating {}", output.display()))?;
                Box::new(std::io::BufWriter::new(file))
            };
            let summary = palisade_store::transfer::export(&store, store.backend(), &mut out)?;
            eprintln!(
                "exported {} groups, {} rules, {} tags, {} tasks, {} API keys, {} quotas from {}",
                summary.groups,
                summary.rules,
                summary.tags,
                summary.tasks,
                summary.api_keys,
                summary.quotas,
                store.backend()
            );
            Ok(())
        }
        Command::Import { input } => {
            let store = open(&cli.db)?;
            let mut reader: Box<dyn std::io::BufRead> = if input.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin().lock()))
            } else {
                let file = std::fs::File::open(&input).with_context(|| format!("opening {}", input.display()))?;
                Box::new(std::io::BufReader::new(file))
            };
            let summary = palisade_store::transfer::import(&store, &mut reader)?;
            eprintln!(
                "imported {} groups, {} rules, {} tags, {} tasks, {} API keys, {} quotas into {}",
                summary.groups,
                summary.rules,
                summary.tags,
                summary.tasks,
                summary.api_keys,
                summary.quotas,
                store.backend()
            );
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&palisade_api::openapi::document())?);
            Ok(())
        }
    }
}
