//! The command line's shape: clap's types for every subcommand and its
//! flags. The subcommands' bodies are in their own files beside this one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::forward::ForwardKind;

#[derive(Debug, Parser)]
#[command(
    name = "yallmp",
    version = super::VERSION,
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
    /// yallmp's own log on stderr: `plain` (the default) or `json`, one
    /// object a line (overrides `proxy_settings.log_format`).
    #[arg(long, global = true, value_enum, env = "YALLMP_LOG_FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
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
    /// A request log file (logs/requests/*.log), or a log segment
    /// (logs/requests/segments/*/*.jsonl; with --id unless it holds one record).
    #[arg(required_unless_present = "id")]
    pub logfile: Option<PathBuf>,
    /// Replay the request with this id: from the configured database (or,
    /// when the log has no database and its files are segments, from the
    /// newest segments); with a segment file, the record in it.
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
