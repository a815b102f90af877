//! The command line: `yallmp [serve]` runs the proxy, `yallmp check`
//! validates a config and prints the resolved model table, `yallmp replay`
//! resends a logged request, `yallmp db` manages the request log's schema,
//! `yallmp inspect-template FILE` shows what a chat template tells the
//! response parsers, `yallmp forward tcp|http|both` runs the forwarders.
//!
//! One file per subcommand; clap's types are in `args.rs`, the start-up
//! banner and model table in `banner.rs`.

mod args;
mod banner;
mod check;
mod db;
mod forward;
mod inspect_template;
mod replay;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::config::Config;

pub use args::{Cli, Command, DbAction, ReplayArgs, StreamMode};
pub use banner::{banner, model_table};
pub use inspect_template::template_report;

/// What `yallmp --version` prints after the name: the package version and
/// the commit the binary was built from (`build.rs`; `-dirty` when tracked
/// files differed from it, `unknown` when built outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("YALLMP_GIT_COMMIT"),
    ")"
);

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The log's format may come from the config: `serve` sets the log
        // up once it has read it.
        None | Some(Command::Serve) => return serve::serve(&cli),
        _ => init_tracing(cli.log_format.unwrap_or_default()),
    }
    match cli.command {
        Some(Command::Check) => check::check(&cli),
        Some(Command::Replay(ref args)) => replay::replay(&cli, args),
        Some(Command::Db { action }) => db::db(&cli, action),
        Some(Command::Forward { kind }) => {
            forward::run(&cli.config, cli.host.is_some() || cli.port.is_some(), kind)
        }
        Some(Command::InspectTemplate { ref file }) => inspect_template::inspect_template(file),
        // Served above.
        None | Some(Command::Serve) => ExitCode::SUCCESS,
    }
}

/// yallmp's own log on stderr, at `RUST_LOG`'s levels (default `info`):
/// plain lines, or one JSON object a line with the event's fields (the
/// request id, model and backend of request-path events among them) at the
/// top level beside `timestamp`, `level`, `target` and `message`.
fn init_tracing(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Plain => fmt.try_init(),
        crate::config::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The config with `--host`/`--port` applied; an invalid one is printed
/// and answered with exit 1.
fn load(cli: &Cli) -> Result<Config, ExitCode> {
    match Config::load(&cli.config) {
        Ok(mut config) => {
            if let Some(h) = &cli.host {
                config.server.host = h.clone();
            }
            if let Some(p) = cli.port {
                config.server.port = p;
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("error: the config is not valid:\n{e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// A multi-threaded runtime for a subcommand; one that cannot start is
/// printed and answered with exit 1.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}
