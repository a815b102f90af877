//! `proxy_settings.logging`: the request log's files, database switch,
//! body bound, queue and what a full queue does, and the files' layout;
//! and `proxy_settings.log_format`, the format of yallmp's own log.

use std::path::PathBuf;

use super::errors::Errors;
use super::raw::{DEFAULT_LOG_SEGMENT_BYTES, RawLogging};
use super::{FileLayout, LoggingSettings, OnFull};

pub(super) fn resolve(raw: RawLogging, errors: &mut Errors) -> LoggingSettings {
    let files_on = raw.files.enabled();
    let dir = raw.files.dir();
    if files_on && dir.trim().is_empty() {
        errors.at("proxy_settings.logging.files.dir", "must not be empty");
    }
    let queue_size = raw.queue_size();
    if queue_size == 0 {
        errors.at("proxy_settings.logging.queue_size", "must be at least 1");
    }
    let queue_max_bytes = raw.queue_max_bytes();
    if queue_max_bytes == 0 {
        errors.at(
            "proxy_settings.logging.queue_max_bytes",
            "must be at least 1",
        );
    }
    let on_full = match raw.on_full.as_deref() {
        None | Some("wait") => OnFull::Wait,
        Some("drop") => OnFull::Drop,
        Some(other) => {
            errors.at(
                "proxy_settings.logging.on_full",
                format!("`{other}` is not one of `drop`, `wait`"),
            );
            OnFull::Wait
        }
    };
    let layout = match raw.files.layout.as_deref() {
        None | Some("per_request") => FileLayout::PerRequest,
        Some("segments") => FileLayout::Segments,
        Some(other) => {
            errors.at(
                "proxy_settings.logging.files.layout",
                format!("`{other}` is not one of `per_request`, `segments`"),
            );
            FileLayout::PerRequest
        }
    };
    let segment_max_bytes = raw
        .files
        .segment_max_bytes
        .unwrap_or(DEFAULT_LOG_SEGMENT_BYTES);
    if segment_max_bytes == 0 {
        errors.at(
            "proxy_settings.logging.files.segment_max_bytes",
            "must be at least 1",
        );
    }
    LoggingSettings {
        files_dir: files_on.then(|| PathBuf::from(dir)),
        database: raw.database.enabled(),
        log_parsed_response: raw.log_parsed_response(),
        log_parsed_stream: raw.log_parsed_stream(),
        log_multipart_files: raw.log_multipart_files.unwrap_or(false),
        max_body_bytes: usize::try_from(raw.max_body_bytes()).unwrap_or(usize::MAX),
        queue_size: queue_size.max(1),
        queue_max_bytes: usize::try_from(queue_max_bytes.max(1)).unwrap_or(usize::MAX),
        on_full,
        layout,
        segment_max_bytes: segment_max_bytes.max(1),
    }
}

/// `proxy_settings.log_format`: how yallmp writes its own log to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Plain,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

pub(super) fn log_format(raw: Option<String>, errors: &mut Errors) -> LogFormat {
    match raw.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => LogFormat::Plain,
        Some(s) if s == "plain" || s.is_empty() => LogFormat::Plain,
        Some(s) if s == "json" => LogFormat::Json,
        Some(s) => {
            errors.at(
                "proxy_settings.log_format",
                format!("expected `plain` or `json`, got `{s}`"),
            );
            LogFormat::Plain
        }
    }
}
