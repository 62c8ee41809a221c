//! `zenith`: the one binary. Client verbs talk to a server through `zenith-client`;
//! `server`, `agent` and `up` run the daemons.

/// `println!` that ends the process quietly when stdout is closed (`zenith jobs | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod cmd;
mod config;
mod ordered;
mod output;
mod telemetry;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes: 0 ok, 1 a job failed (or another error), 2 usage or validation error,
/// 3 server unreachable.
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    /// `zenith job wait --timeout` ran out before the jobs ended (as `timeout(1)`).
    pub const WAIT_TIMED_OUT: u8 = 124;
}

#[derive(Parser)]
#[command(
    name = "zenith",
    version,
    about = "A cluster job scheduler in one binary"
)]
struct Cli {
    /// Diagnostics on stderr as plain text or one JSON object per line.
    #[arg(long, global = true, env = "ZENITH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318 (server,
    /// agent and `up`; built with the `otlp` feature).
    #[cfg(feature = "otlp")]
    #[arg(long, global = true, env = "ZENITH_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server and a local agent in one process (embedded store).
    Up(cmd::daemon::UpArgs),
    /// Run the control plane.
    Server(cmd::daemon::ServerArgs),
    /// Run a node agent that joins a server.
    Agent(cmd::daemon::AgentArgs),
    /// Submit a job: zenith submit [OPTIONS] -- CMD ARGS..., or a batch script:
    /// zenith submit [OPTIONS] job.sh [ARGS...] (options also from its #ZENITH lines).
    Submit(cmd::submit::SubmitArgs),
    /// List jobs.
    Jobs(cmd::jobs::JobsArgs),
    /// Inspect or act on one job.
    Job {
        #[command(subcommand)]
        verb: cmd::job::JobVerb,
    },
    /// List nodes.
    Nodes(cmd::nodes::NodesArgs),
    /// Act on one node.
    Node {
        #[command(subcommand)]
        verb: cmd::nodes::NodeVerb,
    },
    /// List the servers sharing the store: which leads, its lease epoch and age.
    Servers(cmd::servers::ServersArgs),
    /// Follow job, attempt and node transitions as they happen.
    Events(cmd::events::EventsArgs),
    /// The cluster live: utilisation, queues, nodes, running jobs, flow runs.
    Top(cmd::top::TopArgs),
    /// Print a link to the web UI that signs the browser in.
    Ui(cmd::ui::UiArgs),
    /// Run a flow: zenith run FILE|NAME [-p K=V]... [--wait]
    Run(cmd::flow::StartArgs),
    /// List applied flows and recent runs.
    Flows(cmd::flow::ListArgs),
    /// Validate, apply or act on flows and runs.
    Flow {
        #[command(subcommand)]
        verb: cmd::flow::FlowVerb,
    },
    /// Make, list or revoke API tokens of people and programs (admin).
    Token {
        #[command(subcommand)]
        verb: cmd::tokens::TokenVerb,
    },
    /// Who changed what, and who was refused (admin, operator).
    Audit(cmd::audit::AuditArgs),
    /// The user, role and namespaces this token acts as.
    Whoami(cmd::tokens::WhoAmIArgs),
    /// Set or show a namespace's fair-share weight and quota.
    Namespace {
        #[command(subcommand)]
        verb: cmd::namespaces::NamespaceVerb,
    },
    /// Fair share: each namespace's and user's weight, holdings, share and recent usage.
    Share(cmd::namespaces::ShareArgs),
    /// Named clusters (server, token, CA, namespace) in the config file; `zenith up` writes
    /// `local`.
    Context {
        #[command(subcommand)]
        verb: cmd::context::ContextVerb,
    },
    /// This build's version and the server's.
    Version(cmd::version::VersionArgs),
    /// Shell completions: `zenith completions bash > /etc/bash_completion.d/zenith`
    /// (zsh: into a directory on $fpath as `_zenith`; fish: ~/.config/fish/completions/zenith.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man pages of every verb into DIR: `zenith man /usr/local/share/man/man1`.
    Man { dir: std::path::PathBuf },
}

fn main() -> ExitCode {
    // `zenith __guardian`: the agent's watchdog process, before any parsing or runtime.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == zenith_agent::guardian::SUBCOMMAND)
    {
        return ExitCode::from(zenith_agent::guardian::run() as u8);
    }
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Up(_) | Command::Server(_) | Command::Agent(_)
    );
    #[cfg(feature = "otlp")]
    let otlp = cli.otlp_endpoint.clone();
    #[cfg(not(feature = "otlp"))]
    let otlp: Option<String> = None;
    let service = match cli.command {
        Command::Agent(_) => "zenith-agent",
        Command::Up(_) | Command::Server(_) => "zenith-server",
        _ => "zenith-cli",
    };
    let telemetry = telemetry::init(
        daemon,
        cli.log_format == LogFormat::Json,
        otlp.as_deref().filter(|_| daemon),
        service,
    );
    // Only the server needs several threads. The agent's work is a few wakeups per job
    // (stream, process exit, report), and on a multi-threaded runtime each crossed threads
    // (one thread: 767 -> 804-810 tasks/s on an array of `true`); a client verb is one
    // request or stream, and starts faster without worker threads to spawn.
    let mut builder = match cli.command {
        Command::Up(_) | Command::Server(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up(a) => {
                let format = match cli.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                };
                cmd::daemon::up(a, format, otlp.as_deref()).await
            }
            Command::Server(a) => cmd::daemon::server(a).await,
            Command::Agent(a) => cmd::daemon::agent(a).await,
            Command::Submit(a) => cmd::submit::run(a).await,
            Command::Jobs(a) => cmd::jobs::run(a).await,
            Command::Job { verb } => cmd::job::run(verb).await,
            Command::Nodes(a) => cmd::nodes::run(a).await,
            Command::Node { verb } => cmd::nodes::node(verb).await,
            Command::Servers(a) => cmd::servers::run(a).await,
            Command::Events(a) => cmd::events::run(a).await,
            Command::Top(a) => cmd::top::run(a).await,
            Command::Ui(a) => cmd::ui::run(a).await,
            Command::Run(a) => cmd::flow::start(a).await,
            Command::Flows(a) => cmd::flow::list(a).await,
            Command::Flow { verb } => cmd::flow::run(verb).await,
            Command::Token { verb } => cmd::tokens::run(verb).await,
            Command::Audit(a) => cmd::audit::run(a).await,
            Command::Whoami(a) => cmd::tokens::whoami(a).await,
            Command::Namespace { verb } => cmd::namespaces::run(verb).await,
            Command::Share(a) => cmd::namespaces::share(a).await,
            Command::Version(a) => cmd::version::run(a).await,
            Command::Context { verb } => cmd::context::run(verb),
            Command::Man { dir } => {
                let n = cmd::man::write_pages(<Cli as clap::CommandFactory>::command(), &dir)?;
                eprintln!("{n} man pages written to {}", dir.display());
                Ok(0)
            }
            Command::Completions { shell } => {
                // Into a buffer first: clap_complete panics when its writer fails (a closed
                // pipe); ours reports that as any other write.
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut text = Vec::new();
                clap_complete::generate(shell, &mut cmd, "zenith", &mut text);
                std::io::Write::write_all(&mut std::io::stdout(), &text)?;
                Ok(0)
            }
        }
    });
    drop(rt);
    telemetry.shutdown();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = cmd::hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(cmd::exit_code_for(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
