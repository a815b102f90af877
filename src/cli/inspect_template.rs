//! `yallmp inspect-template FILE`: what a Jinja chat template tells the
//! response parsers (think tag, tool-call format), and the settings to
//! match it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::template::{self, TemplateInfo};

/// Reads the template, detects its markup and prints the report; exit 2
/// when the file cannot be read.
pub(super) fn inspect_template(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match template::detect(&text) {
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
pub fn template_report(info: &TemplateInfo, path: &Path) -> String {
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
