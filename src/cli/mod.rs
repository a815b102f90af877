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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Some(Command::Check) => check::check(&cli),
        Some(Command::Replay(ref args)) => replay::replay(&cli, args),
        Some(Command::Db { action }) => db::db(&cli, action),
        Some(Command::Forward { kind }) => {
            forward::run(&cli.config, cli.host.is_some() || cli.port.is_some(), kind)
        }
        Some(Command::InspectTemplate { ref file }) => inspect_template::inspect_template(file),
        None | Some(Command::Serve) => serve::serve(&cli),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
