//! `yallmp check`: validate a config and print the resolved model table.

use std::process::ExitCode;

use super::{Cli, banner::model_table, load};

/// Loads the config (exit 1 when it is not valid), prints its warnings and
/// the model table.
pub(super) fn check(cli: &Cli) -> ExitCode {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        println!("warning: {w}");
    }
    print!("{}", model_table(&config));
    println!("{}: OK", cli.config.display());
    ExitCode::SUCCESS
}
