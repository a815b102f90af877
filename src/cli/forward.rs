//! `yallmp forward tcp|http|both`: read the settings, start the
//! forwarders, print where they listen, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use super::runtime;
use crate::config::Config;
use crate::forward::{self, ForwardKind};

/// `yallmp forward ...`. Without the config file the forwarder still runs,
/// on its defaults and the FORWARD_* / HTTP_FORWARD_* variables: it often
/// runs on another machine than the proxy.
pub(super) fn run(config: &Path, host_or_port: bool, kind: ForwardKind) -> ExitCode {
    if host_or_port {
        eprintln!(
            "error: --host/--port set the proxy's address; a forwarder reads forwarder_settings / http_forwarder_settings or the FORWARD_* / HTTP_FORWARD_* variables"
        );
        return ExitCode::from(2);
    }
    let loaded = if config.exists() {
        Config::load(config)
    } else {
        eprintln!(
            "note: {} not found: forwarder defaults and FORWARD_* / HTTP_FORWARD_* variables apply",
            config.display()
        );
        let dir = std::path::Path::new(".");
        crate::config::Env::for_config_dir(dir)
            .map_err(|e| crate::config::ConfigError {
                file: ".env".into(),
                errors: vec![e],
            })
            .and_then(|env| Config::from_yaml("", None, &env))
    };
    let settings = match loaded {
        Ok(c) => c.forward,
        Err(e) => {
            eprintln!("error: the config is not valid:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        // Before the ports answer: a SIGHUP never finds the default action.
        let signals = crate::server::Signals::install();
        let started = forward::start(kind, &settings).await;
        let forwarders = match started {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        for f in &forwarders {
            let target = match f.name() {
                "tcp" => settings.tcp.target.authority(),
                _ => settings.http.target_url(),
            };
            println!(
                "yallmp {} forwarder listening on {} -> {target}",
                f.name(),
                f.addr()
            );
        }
        forward::run_until_signal(forwarders, signals).await;
        ExitCode::SUCCESS
    })
}
