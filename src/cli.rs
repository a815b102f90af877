//! The command line: `yallmp [serve]` runs the proxy, `yallmp check`
//! validates a config and prints the resolved model table,
//! `yallmp inspect-template FILE` shows what a chat template tells the
//! response parsers, `yallmp forward tcp|http|both` runs the forwarders.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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
    /// Resend a logged request (from a log file, or the database with --id).
    Replay(ReplayArgs),
    /// Run a forwarder in front of the proxy (settings: `forwarder_settings`,
    /// `http_forwarder_settings`, and the FORWARD_* / HTTP_FORWARD_*
    /// variables).
    Forward {
        #[command(subcommand)]
        kind: ForwardKind,
    },
    /// Manage the request-log database schema.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Show what a Jinja chat template says about the model's markup (think
    /// tag, tool-call format) and the parser settings to match it.
    InspectTemplate {
        /// A chat template (.jinja), or a tokenizer_config.json holding one.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A request log file (logs/requests/*.log).
    #[arg(required_unless_present = "id", conflicts_with = "id")]
    pub logfile: Option<PathBuf>,
    /// Replay the request with this id from the configured database.
    #[arg(long)]
    pub id: Option<String>,
    /// Where to send it (default: the logged Host header).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Ask for this model instead.
    #[arg(long)]
    pub model: Option<String>,
    /// Streaming: on, off, or as logged.
    #[arg(long, value_enum, default_value = "as-logged")]
    pub stream_mode: StreamMode,
    /// Print an equivalent curl command; send nothing.
    #[arg(long)]
    pub print_curl: bool,
    /// Show what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give up after this many seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Send `Authorization: Bearer KEY` (for a proxy that requires a key).
    #[arg(long)]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StreamMode {
    On,
    Off,
    AsLogged,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ForwardKind {
    /// Pipe TCP bytes both ways (`forwarder_settings`).
    Tcp,
    /// A reverse proxy that streams bodies and adds X-Forwarded-* headers
    /// (`http_forwarder_settings`).
    Http,
    /// Both in one process; they need different listen ports.
    Both,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum DbAction {
    /// Apply pending migrations.
    Migrate,
    /// Revert the latest applied migration.
    Rollback,
    /// Print the latest applied migration.
    Current,
    /// List every migration and whether it is applied.
    History,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Some(Command::Check) => check(&cli),
        Some(Command::Replay(ref args)) => replay(&cli, args),
        Some(Command::Db { action }) => db(&cli, action),
        Some(Command::Forward { kind }) => {
            crate::forward::cmd::run(&cli.config, cli.host.is_some() || cli.port.is_some(), kind)
        }
        Some(Command::InspectTemplate { ref file }) => inspect_template(file),
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn replay(cli: &Cli, args: &ReplayArgs) -> ExitCode {
    use crate::replay;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let logged = match (&args.logfile, &args.id) {
            (Some(path), _) => match crate::reqlog::file::read_request(path) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            (None, Some(id)) => {
                let config = match load(cli) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let db = match crate::reqlog::db::Db::connect(&config.database.target).await {
                    Ok(db) => db,
                    Err(e) => {
                        eprintln!(
                            "error: database ({}): {e}",
                            config.database.target.describe()
                        );
                        return ExitCode::FAILURE;
                    }
                };
                match db.fetch_request(id).await {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        eprintln!("error: no logged request with id {id}");
                        return ExitCode::FAILURE;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            (None, None) => {
                eprintln!("error: give a log file or --id");
                return ExitCode::FAILURE;
            }
        };
        let opts = replay::Options {
            base_url: args.base_url.clone(),
            model: args.model.clone(),
            stream: match args.stream_mode {
                StreamMode::On => Some(true),
                StreamMode::Off => Some(false),
                StreamMode::AsLogged => None,
            },
            timeout: args
                .timeout
                .filter(|t| *t > 0.0)
                .map(std::time::Duration::from_secs_f64),
            api_key: args.api_key.clone(),
        };
        let prepared = match replay::prepare(&logged, &opts) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if args.print_curl {
            println!("{}", replay::curl(&prepared));
            return ExitCode::SUCCESS;
        }
        if args.dry_run {
            print!("{}", replay::describe(&prepared));
            return ExitCode::SUCCESS;
        }
        let mut out = std::io::stdout();
        match replay::send(&prepared, opts.timeout, &mut out).await {
            Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn db(cli: &Cli, action: DbAction) -> ExitCode {
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let target = &config.database.target;
        let db = match crate::reqlog::db::Db::connect(target).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: database ({}): {e}", target.describe());
                return ExitCode::FAILURE;
            }
        };
        let result = match action {
            DbAction::Migrate => db
                .migrate()
                .await
                .map(|_| println!("migrated: {}", target.describe())),
            DbAction::Rollback => db.rollback().await.map(|v| match v {
                Some(v) => println!("rolled back migration {v}"),
                None => println!("nothing to roll back"),
            }),
            DbAction::Current => {
                db.migrations()
                    .await
                    .map(|m| match m.iter().rev().find(|m| m.applied) {
                        Some(m) => println!("{} {}", m.version, m.description),
                        None => println!("no migration applied"),
                    })
            }
            DbAction::History => db.migrations().await.map(|m| {
                for m in m {
                    let state = if m.applied { "applied" } else { "pending" };
                    println!("{} {:<8} {}", m.version, state, m.description);
                }
            }),
        };
        db.close().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn inspect_template(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match crate::template::detect(&text) {
        Ok(info) => {
            print!("{}", template_report(&info, path));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `inspect-template`'s output: what was detected, then a YAML snippet.
pub fn template_report(info: &crate::template::TemplateInfo, path: &Path) -> String {
    use crate::config::parsers::{Affix, ArgFormat, ParseTagsSettings, ToolFormat};
    // A YAML double-quoted scalar (JSON's string syntax is valid YAML).
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let affix = |a: &Affix| format!("{{prefix: {}, suffix: {}}}", q(&a.prefix), q(&a.suffix));
    let format_name = |f: ToolFormat| match f {
        ToolFormat::Auto => "auto",
        ToolFormat::Hermes => "hermes",
        ToolFormat::Qwen3Coder => "qwen3_coder",
        ToolFormat::Glm => "glm",
        ToolFormat::KimiK2 => "kimi_k2",
        ToolFormat::MinimaxM2 => "minimax_m2",
        ToolFormat::DeepseekV31 => "deepseek_v31",
        ToolFormat::Xml => "xml",
        ToolFormat::Json => "json",
    };
    let mut settings = ParseTagsSettings::default();
    info.apply(&mut settings);

    let mut out = String::new();
    let _ = writeln!(out, "template: {}", path.display());
    let _ = writeln!(out, "method: {}", info.method.describe());
    if let Some(e) = &info.render_error {
        let _ = writeln!(out, "render error: {e}");
    }
    match &info.think_tag {
        Some(t) => {
            let _ = writeln!(out, "think tag: <{t}> … </{t}>");
            let _ = writeln!(
                out,
                "starts in reasoning: {}",
                if info.starts_in_reasoning {
                    "yes (the generation prompt opens the think block)"
                } else {
                    "no"
                }
            );
            let _ = writeln!(
                out,
                "think block as the template writes it: {}<{t}>{}…{}</{t}>{}",
                q(&info.think_open.prefix).trim_matches('"'),
                q(&info.think_open.suffix).trim_matches('"'),
                q(&info.think_close.prefix).trim_matches('"'),
                q(&info.think_close.suffix).trim_matches('"'),
            );
        }
        None => {
            let _ = writeln!(out, "think tag: none found");
        }
    }
    match info.tool_format {
        Some(f) => {
            let markers = match f {
                ToolFormat::KimiK2 => {
                    "<|tool_calls_section_begin|> … <|tool_calls_section_end|>".to_string()
                }
                ToolFormat::MinimaxM2 => "<minimax:tool_call> … </minimax:tool_call>".to_string(),
                ToolFormat::DeepseekV31 => {
                    "<｜tool▁calls▁begin｜> … <｜tool▁calls▁end｜>".to_string()
                }
                _ => format!("{} … {}", settings.tool_open(), settings.tool_close()),
            };
            let args = match f {
                ToolFormat::Xml | ToolFormat::Json => match info.tool_arg_format {
                    Some(ArgFormat::Json) => ", JSON arguments",
                    _ => ", XML-style arguments",
                },
                _ => "",
            };
            let _ = writeln!(out, "tool calls: {} ({markers}{args})", format_name(f));
        }
        None => {
            let _ = writeln!(out, "tool calls: format not detected");
        }
    }
    if !info.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in &info.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Suggested settings (here global; a model's own `parsers:` block takes the same keys)."
    );
    let _ = writeln!(
        out,
        "# Or set parse_tags.template_path: {} and leave tool_format: auto to detect these at load.",
        q(&path.display().to_string())
    );
    let _ = writeln!(out, "proxy_settings:");
    let _ = writeln!(out, "  parsers:");
    let _ = writeln!(out, "    parse_tags:");
    let tag = info.think_tag.as_deref().unwrap_or("think");
    if info.think_tag.is_none() {
        let _ = writeln!(
            out,
            "      # no think tag in the template: the default is kept"
        );
    }
    let _ = writeln!(out, "      think_tag: {}", q(tag));
    let _ = writeln!(
        out,
        "      starts_in_reasoning: {}",
        settings.starts_in_reasoning
    );
    match info.tool_format {
        Some(f) => {
            let _ = writeln!(out, "      tool_format: {}", format_name(f));
        }
        None => {
            let _ = writeln!(out, "      tool_format: auto  # not detected");
        }
    }
    if let Some(o) = &info.tool_open {
        let _ = writeln!(out, "      tool_open: {}", q(o));
    }
    if let Some(c) = &info.tool_close {
        let _ = writeln!(out, "      tool_close: {}", q(c));
    }
    if let Some(a) = info.tool_arg_format {
        let a = match a {
            ArgFormat::Xml => "xml",
            ArgFormat::Json => "json",
        };
        let _ = writeln!(out, "      tool_arg_format: {a}");
    }
    let _ = writeln!(out, "    swap_reasoning_content:");
    let _ = writeln!(out, "      think_tag: {}", q(tag));
    let _ = writeln!(out, "      think_open: {}", affix(&info.think_open));
    let _ = writeln!(out, "      think_close: {}", affix(&info.think_close));
    out
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
        server.run_with(signals).await;
        ExitCode::SUCCESS
    })
}

/// The start-up banner (after the listen line).
pub fn banner(config: &Config, path: &std::path::Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config: {}", path.display());
    out.push_str(&model_table(config));
    let log = &config.logging;
    let files = log
        .files_dir
        .as_ref()
        .map_or_else(|| "off".to_string(), |d| d.display().to_string());
    let database = if log.database {
        config.database.target.describe()
    } else {
        "off".to_string()
    };
    let _ = writeln!(out, "request log: files {files}; database {database}");
    let clients = match config.auth.api_keys.len() {
        0 => "open (no client keys)".to_string(),
        n => format!("{n} client key(s) required"),
    };
    let admin = if config.auth.admin_password.is_some() {
        "/admin needs the admin password"
    } else {
        "/admin answers loopback clients only (no YALLMP_ADMIN_PASSWORD)"
    };
    let _ = writeln!(out, "auth: /v1 {clients}; {admin}");
    // From the route table the router is built from, so it names what is served.
    use crate::api::routes::Group;
    let show = |r: &crate::api::routes::Route, prefix: &str| {
        format!("{} {prefix}{}", r.method, r.path.replace("{*", "{"))
    };
    let client: Vec<String> = [Group::OpenAi, Group::Anthropic]
        .into_iter()
        .flat_map(Group::routes)
        .map(|r| {
            if r.path == "/responses" && !config.enable_responses_endpoint {
                "(/v1/responses off: proxy_settings.enable_responses_endpoint)".to_string()
            } else {
                show(&r, "/v1")
            }
        })
        .collect();
    let root: Vec<String> = Group::Root
        .routes()
        .iter()
        .filter(|r| !r.path.starts_with("/admin"))
        .map(|r| show(r, ""))
        .collect();
    let _ = writeln!(
        out,
        "endpoints: {} (each also without /v1); {}; /admin/*",
        client.join(", "),
        root.join(", ")
    );
    out
}

/// `parse_tags(auto) → swap_reasoning_content(reasoning_to_content)` on `/chat/completions`.
fn describe_parsers(p: &crate::config::parsers::ParsersSettings) -> String {
    use crate::config::parsers::ResponseModule;
    let modules: Vec<String> = p
        .response
        .iter()
        .map(|m| match m {
            ResponseModule::ParseTags => {
                let t = &p.parse_tags;
                let mut d = format!("parse_tags({}", serde_name(&t.tool_format));
                if t.starts_in_reasoning {
                    d.push_str(", starts_in_reasoning");
                }
                d.push(')');
                d
            }
            ResponseModule::SwapReasoningContent => {
                format!(
                    "swap_reasoning_content({})",
                    serde_name(&p.swap_reasoning_content.mode)
                )
            }
            ResponseModule::NormalizeReasoning => format!(
                "normalize_reasoning({})",
                p.normalize_reasoning.fields.join(", ")
            ),
        })
        .collect();
    format!("{} on {}", modules.join(" → "), p.paths.join(", "))
}

/// The name a value has in the config file.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
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
            if m.backends.len() > 1 {
                let _ = write!(extra, ", weight={}", b.routing.weight);
                if let Some(o) = b.routing.order {
                    let _ = write!(extra, ", order={o}");
                }
            }
            if let Some(h) = &b.routing.health_check {
                let _ = write!(
                    extra,
                    ", health check {} every {}s",
                    h.path,
                    h.interval.as_secs_f64()
                );
            }
            let _ = writeln!(
                out,
                "    {:<14} {:<9} {} model={upstream} key={key} timeout={}s{extra}",
                b.name,
                b.api_type.as_str(),
                crate::config::mask_url_secret(&b.api_base),
                b.request_timeout.as_secs_f64(),
            );
        }
        if !m.fallbacks.is_empty() {
            let _ = writeln!(out, "    fallbacks: {}", m.fallbacks.join(" → "));
        }
        let (parsers, whose) = match &m.parsers {
            Some(p) => (p, "own"),
            None => (&config.parsers, "global"),
        };
        if parsers.enabled == Some(true) && !parsers.response.is_empty() {
            let _ = writeln!(out, "    parsers ({whose}): {}", describe_parsers(parsers));
        }
    }
    let _ = writeln!(out, "retries per backend: {}", config.router.num_retries);
    let r = &config.router;
    let _ = writeln!(
        out,
        "routing: {}, cooldown after more than {} failures a minute, for {}s",
        r.strategy.as_str(),
        r.allowed_fails,
        r.cooldown_time.as_secs_f64()
    );
    out
}
