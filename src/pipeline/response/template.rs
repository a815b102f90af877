//! Chat templates: what a model's Jinja template says about its markup
//! (think tag, tool-call markers, argument format), for `tool_format: auto`
//! and `yallmp inspect-template`.

use crate::config::parsers::{Affix, ArgFormat, ParseTagsSettings, ToolFormat};

/// What a template gives away.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateInfo {
    pub think_tag: Option<String>,
    /// The generation prompt opens the think block itself.
    pub starts_in_reasoning: bool,
    pub tool_format: Option<ToolFormat>,
    pub tool_open: Option<String>,
    pub tool_close: Option<String>,
    pub tool_arg_format: Option<ArgFormat>,
    /// Suggested `swap_reasoning_content.think_open` / `think_close`.
    pub think_open: Affix,
    pub think_close: Affix,
}

impl TemplateInfo {
    /// Fills in what the settings leave at their defaults.
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
            if let Some(a) = self.tool_arg_format {
                s.tool_arg_format = a;
            }
        }
    }
}

/// Reads a template.
pub fn detect(template: &str) -> Result<TemplateInfo, String> {
    let _ = template;
    Ok(TemplateInfo::default())
}
