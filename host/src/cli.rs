//! The `flowgate` command line: one module per command group.

mod engine_cmds;
mod local;
mod plugin;
mod remote;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};

/// Flowgate: a workflow engine with tenant plugins.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLOWGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(flatten)]
    local: local::LocalArgs,
    #[command(flatten)]
    remote: remote::RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, deploy and list workflow definitions.
    #[command(subcommand)]
    Workflow(engine_cmds::WorkflowCommand),
    /// Start, show, list and cancel instances.
    #[command(subcommand)]
    Instance(engine_cmds::InstanceCommand),
    /// List, claim and complete tasks.
    #[command(subcommand)]
    Task(engine_cmds::TaskCommand),
    /// Resolve incidents: retry or skip a failed step.
    #[command(subcommand)]
    Incident(engine_cmds::IncidentCommand),
    /// Fire due timers and carry out pending effects.
    Tick,
    /// Run the daemon: the HTTP API for every configured tenant.
    Serve(serve::ServeArgs),
    /// Inspect and try out plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Write a backup of a running daemon's data folder while it serves (with `--url` and the
    /// operator's `--token`); prints the backup's folder.
    Backup,
    /// Put a backup's store, plugins and link key in place of the data folder's (`--data-dir`),
    /// setting the replaced files aside. Stop the daemon first.
    Restore {
        /// The backup's folder (as `flowgate backup` printed it).
        folder: std::path::PathBuf,
    },
}

/// Sets up tracing; `RUST_LOG` filters (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log redirected to a file or a collector stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The `flowgate` command: parses the arguments, sets up logging, runs, and reports an error
/// with its causes.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", report(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: a cause whose words its error already says (many
/// errors include their source's message) is not repeated.
pub fn report(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // With `--url`, the engine commands go to a running daemon.
    if let Some(r) = cli.remote.connect()? {
        return match cli.command {
            Command::Workflow(c) => remote::workflow(&r, c),
            Command::Instance(c) => remote::instance(&r, c),
            Command::Task(c) => remote::task(&r, c),
            Command::Incident(c) => remote::incident(&r, c),
            Command::Tick => {
                anyhow::bail!(
                    "`tick` runs a local data file's engine; a daemon fires its own timers"
                )
            }
            Command::Backup => remote::backup(&r),
            Command::Plugin(plugin::PluginCommand::Replay(args)) => remote::replay(&r, args),
            Command::Serve(_) | Command::Plugin(_) | Command::Restore { .. } => {
                anyhow::bail!(
                    "--url is for the workflow, instance, task, incident, plugin replay and backup commands"
                )
            }
        };
    }
    match cli.command {
        Command::Workflow(c) => engine_cmds::workflow(&cli.local, c),
        Command::Instance(c) => engine_cmds::instance(&cli.local, c),
        Command::Task(c) => engine_cmds::task(&cli.local, c),
        Command::Incident(c) => engine_cmds::incident(&cli.local, c),
        Command::Tick => engine_cmds::tick(&cli.local),
        Command::Serve(args) => {
            // Only flags given explicitly override the daemon's configuration file.
            let data_dir = std::env::args()
                .any(|a| a.starts_with("--data-dir"))
                .then(|| cli.local.data_dir.clone());
            let tenant = std::env::args()
                .any(|a| a.starts_with("--tenant"))
                .then(|| cli.local.tenant.clone());
            serve::run(args, data_dir, tenant)
        }
        Command::Plugin(command) => plugin::run(command),
        Command::Backup => anyhow::bail!(
            "`backup` asks a running daemon for a consistent copy: give --url and the operator's --token"
        ),
        Command::Restore { folder } => {
            use crate::service::Clock;
            let data = crate::data_dir::DataDir::new(&cli.local.data_dir);
            let now = crate::service::SystemClock.now();
            let report = crate::backup::restore(&folder, &data, now)?;
            print_json(&serde_json::to_value(report)?)
        }
    }
}

/// Prints pretty JSON; a closed pipe (`| head`) ends quietly rather than panicking.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_arguments_are_consistent() {
        // Two arguments of one name (a global `--token` and a command's `token`) fail here, not
        // at a user's first call.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn a_cause_already_in_its_error_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot read x.toml: no such file");
        assert_eq!(super::report(&error), "cannot read x.toml: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot read x.toml");
        assert_eq!(super::report(&error), "cannot read x.toml: no such file");
    }
}
