//! `proxy_settings.parsers` and a model's own `parsers:` block: which
//! response modules run, in which order, with what options. The serde types
//! are the settings; defaults live on them, unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::errors::{Errors, KeyPath};
use crate::template::TemplateInfo;
pub use crate::template::{Affix, ArgFormat, ToolFormat};

/// One response parser configuration (global, or a model's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParsersSettings {
    /// Global default false; a model's own block defaults to true (the
    /// loader fills that in).
    pub enabled: Option<bool>,
    /// Request paths (substrings) the parsers apply to.
    pub paths: Vec<String>,
    /// Response modules, in order.
    pub response: Vec<ResponseModule>,
    pub parse_tags: ParseTagsSettings,
    pub swap_reasoning_content: SwapSettings,
    pub normalize_reasoning: NormalizeSettings,
}

impl Default for ParsersSettings {
    fn default() -> Self {
        ParsersSettings {
            enabled: None,
            paths: vec!["/chat/completions".into()],
            response: vec![ResponseModule::ParseTags],
            parse_tags: ParseTagsSettings::default(),
            swap_reasoning_content: SwapSettings::default(),
            normalize_reasoning: NormalizeSettings::default(),
        }
    }
}

impl ParsersSettings {
    /// Whether these parsers run for a request to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.enabled == Some(true)
            && !self.response.is_empty()
            && self.paths.iter().any(|p| path.contains(p.as_str()))
    }
}

/// A response module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseModule {
    /// Reasoning and tool calls out of raw markup in `content`.
    ParseTags,
    /// Reasoning into `content` inside think tags, or the reverse.
    SwapReasoningContent,
    /// One reasoning field name whatever the backend sends.
    NormalizeReasoning,
}

/// `parse_tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParseTagsSettings {
    /// A Jinja chat template to detect tags and the tool format from
    /// (relative to the config file); empty for none.
    pub template_path: String,
    pub parse_thinking: bool,
    pub think_tag: String,
    /// Text before the first close tag is reasoning even without an open tag.
    pub starts_in_reasoning: bool,
    pub parse_tool_calls: bool,
    pub tool_format: ToolFormat,
    /// Argument format of the generic formats (`xml`, `json`).
    pub tool_arg_format: ArgFormat,
    pub tool_tag: String,
    /// Generic open/close markers; default `<tool_tag>` / `</tool_tag>`.
    pub tool_open: Option<String>,
    pub tool_close: Option<String>,
    /// Bytes a tool block may grow unclosed before it is released as text;
    /// 0 = the default bound (1 MiB, `DEFAULT_TOOL_BUFFER_LIMIT`).
    pub tool_buffer_limit: usize,
}

impl Default for ParseTagsSettings {
    fn default() -> Self {
        ParseTagsSettings {
            template_path: String::new(),
            parse_thinking: true,
            think_tag: "think".into(),
            starts_in_reasoning: false,
            parse_tool_calls: true,
            tool_format: ToolFormat::Auto,
            tool_arg_format: ArgFormat::Xml,
            tool_tag: "tool_call".into(),
            tool_open: None,
            tool_close: None,
            tool_buffer_limit: 0,
        }
    }
}

impl ParseTagsSettings {
    pub fn tool_open(&self) -> String {
        self.tool_open
            .clone()
            .unwrap_or_else(|| format!("<{}>", self.tool_tag))
    }
    pub fn tool_close(&self) -> String {
        self.tool_close
            .clone()
            .unwrap_or_else(|| format!("</{}>", self.tool_tag))
    }
}

// The template's findings are applied here rather than in `template`, which
// sits below the config and knows nothing of its settings; an inherent impl
// may live in any module of the crate, so callers still write `info.apply`.
impl TemplateInfo {
    /// Fills in what the settings leave at their defaults; the tool format
    /// and its markers only when `tool_format` is `auto`.
    pub fn apply(&self, s: &mut ParseTagsSettings) {
        if let Some(t) = &self.think_tag
            && s.think_tag == "think"
        {
            s.think_tag = t.clone();
        }
        s.starts_in_reasoning |= self.starts_in_reasoning;
        if s.tool_format == ToolFormat::Auto {
            if let Some(f) = self.tool_format {
                s.tool_format = f;
            }
            if s.tool_open.is_none() {
                s.tool_open = self.tool_open.clone();
            }
            if s.tool_close.is_none() {
                s.tool_close = self.tool_close.clone();
            }
            if let Some(a) = self.tool_arg_format
                && s.tool_arg_format == ArgFormat::Xml
            {
                s.tool_arg_format = a;
            }
        }
    }
}

/// `swap_reasoning_content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwapSettings {
    pub mode: SwapMode,
    pub think_tag: String,
    #[serde(deserialize_with = "AffixDef::deserialize")]
    pub think_open: Affix,
    #[serde(deserialize_with = "AffixDef::deserialize")]
    pub think_close: Affix,
    /// A newline between the close tag and the answer.
    pub include_newline: bool,
}

impl Default for SwapSettings {
    fn default() -> Self {
        SwapSettings {
            mode: SwapMode::ReasoningToContent,
            think_tag: "think".into(),
            think_open: Affix::default(),
            think_close: Affix::default(),
            include_newline: true,
        }
    }
}

/// [`Affix`] as the config reads it: its own `Deserialize` (in `template`)
/// rejects unknown keys, which would stop the loader with serde's wording;
/// read through this twin, an unknown key is left for the loader to report
/// like any other (`unknown.rs`). A field added to `Affix` fails to compile
/// here until it is added too.
#[derive(Deserialize)]
#[serde(remote = "Affix")]
struct AffixDef {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapMode {
    ReasoningToContent,
    ContentToReasoning,
    Auto,
}

/// `normalize_reasoning`: the field names reasoning is written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalizeSettings {
    pub fields: Vec<String>,
}

impl Default for NormalizeSettings {
    fn default() -> Self {
        NormalizeSettings {
            fields: vec!["reasoning_content".into()],
        }
    }
}

/// Checks a resolved block; `at` is its key path.
pub fn validate(s: &ParsersSettings, at: &KeyPath, errors: &mut Errors) {
    let t = &s.parse_tags;
    if t.think_tag.trim().is_empty() {
        errors.at(at.key("parse_tags.think_tag"), "must not be empty");
    }
    if t.tool_open().is_empty() || t.tool_close().is_empty() {
        errors.at(
            at.key("parse_tags"),
            "tool_open and tool_close must not be empty",
        );
    }
    if s.swap_reasoning_content.think_tag.trim().is_empty() {
        errors.at(
            at.key("swap_reasoning_content.think_tag"),
            "must not be empty",
        );
    }
    if s.normalize_reasoning.fields.is_empty()
        || s.normalize_reasoning.fields.iter().any(|f| f.is_empty())
    {
        errors.at(
            at.key("normalize_reasoning.fields"),
            "needs at least one non-empty field name",
        );
    }
    let mut seen = Vec::new();
    for m in &s.response {
        if seen.contains(m) {
            errors.at(at.key("response"), format!("{m:?} is listed twice"));
        }
        seen.push(*m);
    }
}

/// The template path, relative to the config file's directory.
pub fn template_path(s: &ParseTagsSettings, config: Option<&Path>) -> Option<PathBuf> {
    let p = s.template_path.trim();
    if p.is_empty() {
        return None;
    }
    let p = PathBuf::from(p);
    if p.is_absolute() {
        return Some(p);
    }
    // Beside the config first, then as given (relative to the working
    // directory).
    match config.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join(&p).exists() => Some(dir.join(p)),
        _ => Some(p),
    }
}

/// Fills in what a block leaves open: `enabled` (false globally, true for
/// a model's own block), then checks it and applies the chat template's
/// detected markers, if a template is given.
pub fn resolve(
    mut s: ParsersSettings,
    at: &KeyPath,
    default_enabled: bool,
    config: Option<&Path>,
    errors: &mut Errors,
) -> ParsersSettings {
    s.enabled = Some(s.enabled.unwrap_or(default_enabled));
    validate(&s, at, errors);
    if let Some(path) = template_path(&s.parse_tags, config) {
        match std::fs::read_to_string(&path) {
            Ok(text) => match crate::template::detect(&text) {
                Ok(info) => info.apply(&mut s.parse_tags),
                Err(e) => errors.at(
                    at.key("parse_tags.template_path"),
                    format!("{}: {e}", path.display()),
                ),
            },
            Err(e) => errors.at(
                at.key("parse_tags.template_path"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_fills_only_defaults() {
        let info = TemplateInfo {
            think_tag: Some("seed:think".into()),
            starts_in_reasoning: true,
            tool_format: Some(ToolFormat::Xml),
            tool_open: Some("<call>".into()),
            tool_close: Some("</call>".into()),
            tool_arg_format: Some(ArgFormat::Json),
            ..TemplateInfo::default()
        };
        let mut s = ParseTagsSettings::default();
        info.apply(&mut s);
        assert_eq!(s.think_tag, "seed:think");
        assert!(s.starts_in_reasoning);
        assert_eq!(s.tool_format, ToolFormat::Xml);
        assert_eq!(s.tool_open(), "<call>");
        assert_eq!(s.tool_close(), "</call>");
        assert_eq!(s.tool_arg_format, ArgFormat::Json);

        // Set by hand: kept. A format other than auto: no tool values at all.
        let mut s = ParseTagsSettings {
            think_tag: "reasoning".into(),
            tool_format: ToolFormat::Hermes,
            ..ParseTagsSettings::default()
        };
        info.apply(&mut s);
        assert_eq!(s.think_tag, "reasoning");
        assert_eq!(s.tool_format, ToolFormat::Hermes);
        assert_eq!(
            (s.tool_open.as_deref(), s.tool_close.as_deref()),
            (None, None)
        );
        assert_eq!(s.tool_arg_format, ArgFormat::Xml);

        // Auto with markers set by hand: the markers stay.
        let mut s = ParseTagsSettings {
            tool_open: Some("<mine>".into()),
            ..ParseTagsSettings::default()
        };
        info.apply(&mut s);
        assert_eq!(s.tool_format, ToolFormat::Xml);
        assert_eq!(s.tool_open(), "<mine>");
        assert_eq!(s.tool_close(), "</call>");

        // Nothing detected: nothing changes.
        let mut s = ParseTagsSettings::default();
        TemplateInfo::default().apply(&mut s);
        assert_eq!(s, ParseTagsSettings::default());
    }
}
