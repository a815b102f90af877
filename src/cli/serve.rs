//! `yallmp [serve]`: run the proxy until SIGINT/SIGTERM (SIGHUP reloads),
//! after the listen line and the banner.

use std::process::ExitCode;

use super::{Cli, banner::banner, load, runtime};

/// Loads the config, starts the proxy and runs it until a stop signal.
pub(super) fn serve(cli: &Cli) -> ExitCode {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => {
            super::init_tracing(cli.log_format.unwrap_or_default());
            return code;
        }
    };
    super::init_tracing(cli.log_format.unwrap_or(config.log_format));
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        // Before the port answers: a SIGHUP from then on reloads.
        let signals = crate::server::Signals::install();
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let text = banner(&config, &cli.config);
        let server = match crate::serve(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "yallmp {} listening on {}",
            env!("CARGO_PKG_VERSION"),
            server.url()
        );
        print!("{text}");
        // Listening and serving: systemd's `Type=notify` start is over.
        crate::server::notify::ready();
        server.run_with(signals).await;
        ExitCode::SUCCESS
    })
}
