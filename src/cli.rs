//! The command line: `yallmp [serve]` runs the proxy, `yallmp check`
//! validates a config and prints the resolved model table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "yallmp",
    version,
    about = "A fast, faithful, debuggable LLM proxy"
)]
pub struct Cli {
    /// Config file (its `.env` is loaded first).
    #[arg(
        long,
        global = true,
        env = "YALLMP_CONFIG",
        default_value = "configs/config.yaml"
    )]
    pub config: PathBuf,
    /// Listen host (overrides the config).
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Listen port (overrides the config).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the config and print the resolved model table.
    Check,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Some(Command::Check) => check(&cli),
        None | Some(Command::Serve) => serve(&cli),
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

fn check(cli: &Cli) -> ExitCode {
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

fn serve(cli: &Cli) -> ExitCode {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
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
        server.run_until_signal().await;
        ExitCode::SUCCESS
    })
}

/// The start-up banner (after the listen line).
pub fn banner(config: &Config, path: &std::path::Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config: {}", path.display());
    out.push_str(&model_table(config));
    let responses = if config.enable_responses_endpoint {
        "POST /v1/responses"
    } else {
        "(/v1/responses off: proxy_settings.enable_responses_endpoint)"
    };
    let _ = writeln!(
        out,
        "endpoints: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, {responses}, GET /healthz (also without /v1)"
    );
    out
}

/// Each model with its backends and fallbacks; keys shown as `***`.
pub fn model_table(config: &Config) -> String {
    let mut out = String::new();
    if config.models.is_empty() {
        out.push_str("models: none configured\n");
        return out;
    }
    let _ = writeln!(out, "models:");
    for m in &config.models {
        let _ = writeln!(out, "  {}", m.name);
        for b in &m.backends {
            let upstream = b.upstream_model.as_deref().unwrap_or("(as requested)");
            let key = if b.api_key.is_some() { "***" } else { "none" };
            let mut extra = String::new();
            if b.supports_reasoning {
                extra.push_str(", reasoning");
            }
            let _ = writeln!(
                out,
                "    {:<14} {:<9} {} model={upstream} key={key} timeout={}s{extra}",
                b.name,
                b.api_type.as_str(),
                b.api_base,
                b.request_timeout.as_secs_f64(),
            );
        }
        if !m.fallbacks.is_empty() {
            let _ = writeln!(out, "    fallbacks: {}", m.fallbacks.join(" → "));
        }
    }
    let _ = writeln!(out, "retries per backend: {}", config.router.num_retries);
    out
}
