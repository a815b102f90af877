//! `yallmp forward tcp|http|both`: read the settings, start the
//! forwarders, print where they listen, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::ForwardKind;
use crate::config::Config;

/// `yallmp forward ...`. Without the config file the forwarder still runs,
/// on its defaults and the FORWARD_* / HTTP_FORWARD_* variables: it often
/// runs on another machine than the proxy.
pub fn run(config: &Path, host_or_port: bool, kind: ForwardKind) -> ExitCode {
    use crate::forward;
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        // Before the ports answer: a SIGHUP never finds the default action.
        let signals = crate::server::Signals::install();
        let started = match kind {
            ForwardKind::Tcp => forward::tcp::start(&settings.tcp).await.map(|f| vec![f]),
            ForwardKind::Http => forward::http::start(&settings.http).await.map(|f| vec![f]),
            ForwardKind::Both => forward::start_both(&settings)
                .await
                .map(|(t, h)| vec![t, h]),
        };
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
