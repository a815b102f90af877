//! Chat templates: what a model's Jinja template says about its markup
//! (think tag, tool-call markers, argument format), for `tool_format: auto`
//! and `yallmp inspect-template`.
//!
//! The template renders a probe conversation (system, user, an assistant
//! turn with reasoning, an answer and a tool call, the tool's result, user
//! again, the generation prompt) with minijinja; the markers are read off
//! the text around the probe's own strings. A template minijinja cannot
//! render is searched for the same markers in its literal text instead.
//!
//! A leaf below `config`: the config calls [`detect`] for a
//! `parse_tags.template_path` and fills its settings from the answer, so
//! nothing here may import `config` (the markup vocabulary the two share,
//! [`ToolFormat`], [`ArgFormat`] and [`Affix`], lives in [`markup`]).

mod jinja;
mod literal;
pub mod markup;
mod probe;
mod read;

use std::borrow::Cow;

use serde_json::Value;

pub use markup::{Affix, ArgFormat, ToolFormat};

/// How a template was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    /// A probe conversation was rendered with minijinja.
    #[default]
    Rendered,
    /// Rendering failed; the template's literal text was searched.
    LiteralScan,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::Rendered => "rendered a probe conversation (minijinja)",
            Method::LiteralScan => "scanned the template's literal text (rendering failed)",
        }
    }
}

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
    /// How the values were found.
    pub method: Method,
    /// Why rendering failed (with [`Method::LiteralScan`]).
    pub render_error: Option<String>,
    /// Caveats worth showing a person (`inspect-template` prints them).
    pub notes: Vec<String>,
}

/// Reads a template (or a `tokenizer_config.json` holding one).
pub fn detect(template: &str) -> Result<TemplateInfo, String> {
    let source = template_source(template)?;
    if source.trim().is_empty() {
        return Err("the template is empty".into());
    }
    match probe::render_probes(&source) {
        Ok(r) => Ok(read::from_renders(&r, &source)),
        Err(e) => {
            let mut info = literal::scan_literal(&source);
            info.method = Method::LiteralScan;
            info.render_error = Some(e);
            Ok(info)
        }
    }
}

/// The template text: the file itself, or the `chat_template` of a
/// Hugging Face `tokenizer_config.json` (the `tool_use` one when it has
/// several).
fn template_source(text: &str) -> Result<Cow<'_, str>, String> {
    if !text.trim_start().starts_with('{') {
        return Ok(Cow::Borrowed(text));
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        // `{%` / `{{`: a template.
        return Ok(Cow::Borrowed(text));
    };
    match obj.get("chat_template") {
        Some(Value::String(t)) => Ok(Cow::Owned(t.clone())),
        Some(Value::Array(list)) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
            };
            named("tool_use")
                .or_else(|| named("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(|t| Cow::Owned(t.to_string()))
                .ok_or_else(|| "`chat_template` holds no template".to_string())
        }
        _ => Err("a JSON file without a `chat_template` string".into()),
    }
}

/// A chat template shipped in `configs/jinja_templates/` (for tests here
/// and of the tag parser).
#[cfg(test)]
pub(crate) fn shipped(name: &str) -> String {
    let path = format!(
        "{}/configs/jinja_templates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affix(prefix: &str, suffix: &str) -> Affix {
        Affix {
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    /// (file, think tag, starts_in_reasoning, tool format, think_open, think_close)
    #[allow(clippy::type_complexity)]
    const SHIPPED: &[(
        &str,
        Option<&str>,
        bool,
        ToolFormat,
        (&str, &str),
        (&str, &str),
    )] = &[
        (
            "qwen3.jinja",
            Some("think"),
            false,
            ToolFormat::Hermes,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "qwen3_thinking.jinja",
            Some("think"),
            true,
            ToolFormat::Hermes,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "qwen3_coder.jinja",
            None,
            false,
            ToolFormat::Qwen3Coder,
            ("", ""),
            ("", ""),
        ),
        (
            "glm4.5.jinja",
            Some("think"),
            false,
            ToolFormat::Glm,
            ("\n", ""),
            ("", "\n"),
        ),
        (
            "deepseek_r1.jinja",
            Some("think"),
            true,
            ToolFormat::DeepseekV31,
            ("", "\n"),
            ("", ""),
        ),
        (
            "deepseek_v3.1.jinja",
            Some("think"),
            true,
            ToolFormat::DeepseekV31,
            ("", ""),
            ("", ""),
        ),
        (
            "kimi_k2.jinja",
            None,
            false,
            ToolFormat::KimiK2,
            ("", ""),
            ("", ""),
        ),
        (
            "minimax_m2.jinja",
            Some("think"),
            true,
            ToolFormat::MinimaxM2,
            ("", "\n"),
            ("\n", "\n\n"),
        ),
        (
            "hermes.jinja",
            None,
            false,
            ToolFormat::Hermes,
            ("", ""),
            ("", ""),
        ),
    ];

    #[test]
    fn shipped_templates_render_and_detect() {
        for &(file, tag, starts, format, open, close) in SHIPPED {
            let info = detect(&shipped(file)).unwrap();
            assert_eq!(
                info.method,
                Method::Rendered,
                "{file}: {:?}",
                info.render_error
            );
            assert_eq!(info.think_tag.as_deref(), tag, "{file}");
            assert_eq!(info.starts_in_reasoning, starts, "{file}");
            assert_eq!(info.tool_format, Some(format), "{file}");
            // The known formats keep the default `<tool_call>` markers.
            assert_eq!(
                (&info.tool_open, &info.tool_close),
                (&None, &None),
                "{file}"
            );
            assert_eq!(info.tool_arg_format, None, "{file}");
            assert_eq!(info.think_open, affix(open.0, open.1), "{file}");
            assert_eq!(info.think_close, affix(close.0, close.1), "{file}");
        }
    }

    #[test]
    fn every_shipped_template_is_covered() {
        let dir = format!("{}/configs/jinja_templates", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".jinja") {
                assert!(
                    SHIPPED.iter().any(|s| s.0 == name),
                    "{name} has no test row"
                );
            }
        }
    }

    #[test]
    fn thinking_dependent_generation_prompt_is_noted() {
        let v31 = detect(&shipped("deepseek_v3.1.jinja")).unwrap();
        assert!(
            v31.notes
                .iter()
                .any(|n| n.contains("only with thinking on")),
            "{:?}",
            v31.notes
        );
        let r1 = detect(&shipped("deepseek_r1.jinja")).unwrap();
        assert!(
            r1.notes
                .iter()
                .any(|n| n.contains("does not render reasoning_content"))
        );
        // Qwen3 hybrid writes an empty, closed think block with thinking off.
        let q = detect(&shipped("qwen3.jinja")).unwrap();
        assert!(q.notes.is_empty(), "{:?}", q.notes);
    }

    /// `{% generation %}` (transformers' assistant-mask tag) is not
    /// minijinja syntax: the literal text is searched instead.
    fn unrenderable(text: &str) -> String {
        format!("{{% generation %}}{{% endgeneration %}}\n{text}")
    }

    #[test]
    fn literal_scan_when_the_template_cannot_render() {
        let info = detect(&unrenderable(&shipped("qwen3.jinja"))).unwrap();
        assert_eq!(info.method, Method::LiteralScan);
        assert!(
            info.render_error
                .as_deref()
                .unwrap_or("")
                .contains("generation")
        );
        assert_eq!(info.think_tag.as_deref(), Some("think"));
        assert!(!info.starts_in_reasoning);
        assert_eq!(info.tool_format, Some(ToolFormat::Hermes));
        assert_eq!(info.think_open, affix("", "\n"));
        assert_eq!(info.think_close, affix("\n", "\n\n"));
        assert!(info.notes.iter().any(|n| n.contains("literal text")));

        let cases = [
            (
                "qwen3_thinking.jinja",
                Some("think"),
                true,
                Some(ToolFormat::Hermes),
            ),
            (
                "qwen3_coder.jinja",
                None,
                false,
                Some(ToolFormat::Qwen3Coder),
            ),
            ("glm4.5.jinja", Some("think"), false, Some(ToolFormat::Glm)),
            (
                "deepseek_r1.jinja",
                Some("think"),
                true,
                Some(ToolFormat::DeepseekV31),
            ),
            ("kimi_k2.jinja", None, false, Some(ToolFormat::KimiK2)),
            (
                "minimax_m2.jinja",
                Some("think"),
                true,
                Some(ToolFormat::MinimaxM2),
            ),
        ];
        for (file, tag, starts, format) in cases {
            let info = detect(&unrenderable(&shipped(file))).unwrap();
            assert_eq!(info.method, Method::LiteralScan, "{file}");
            assert_eq!(info.think_tag.as_deref(), tag, "{file}");
            assert_eq!(info.starts_in_reasoning, starts, "{file}");
            assert_eq!(info.tool_format, format, "{file}");
        }
        // MiniMax joins its literals with `~`.
        let mm = detect(&unrenderable(&shipped("minimax_m2.jinja"))).unwrap();
        assert_eq!(mm.think_open, affix("", "\n"));
        assert_eq!(mm.think_close, affix("\n", "\n\n"));
    }

    const CUSTOM: &str = r#"{%- for m in messages -%}
<|{{ m.role }}|>
{%- if m.reasoning_content %}<seed:think>{{ m.reasoning_content }}</seed:think>{% endif -%}
{{ m.content or '' }}
{%- for c in m.tool_calls or [] %}<function_call>{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}</function_call>{% endfor -%}
<|end|>
{%- endfor -%}
{%- if add_generation_prompt %}<|assistant|><seed:think>{% endif -%}"#;

    #[test]
    fn custom_markers_and_tag_names() {
        let info = detect(CUSTOM).unwrap();
        assert_eq!(info.method, Method::Rendered, "{:?}", info.render_error);
        assert_eq!(info.think_tag.as_deref(), Some("seed:think"));
        assert!(info.starts_in_reasoning);
        assert_eq!(info.tool_format, Some(ToolFormat::Json));
        assert_eq!(info.tool_open.as_deref(), Some("<function_call>"));
        assert_eq!(info.tool_close.as_deref(), Some("</function_call>"));
        assert_eq!(info.tool_arg_format, Some(ArgFormat::Json));

        let xml = CUSTOM.replace(
            r#"<function_call>{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}</function_call>"#,
            "<call><name>{{ c.function.name }}</name>{% for k, v in c.function.arguments|items %}<{{ k }}>{{ v }}</{{ k }}>{% endfor %}</call>",
        ).replace("seed:think", "thinking");
        let info = detect(&xml).unwrap();
        assert_eq!(info.think_tag.as_deref(), Some("thinking"));
        assert_eq!(info.tool_format, Some(ToolFormat::Xml));
        assert_eq!(info.tool_open.as_deref(), Some("<call>"));
        assert_eq!(info.tool_close.as_deref(), Some("</call>"));
        assert_eq!(info.tool_arg_format, Some(ArgFormat::Xml));
    }

    #[test]
    fn no_tools_no_think() {
        let plain = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let info = detect(plain).unwrap();
        assert_eq!(info.method, Method::Rendered);
        assert_eq!((info.think_tag, info.tool_format), (None, None));
        assert!(info.notes.iter().any(|n| n.contains("no tool calls")));
    }

    #[test]
    fn tokenizer_config_json_and_empty_input() {
        let json = serde_json::json!({
            "bos_token": "<s>",
            "chat_template": [
                {"name": "default", "template": "{{ messages[0].content }}"},
                {"name": "tool_use", "template": shipped("hermes.jinja")},
            ]
        });
        let info = detect(&json.to_string()).unwrap();
        assert_eq!(info.tool_format, Some(ToolFormat::Hermes));
        let one = serde_json::json!({"chat_template": shipped("kimi_k2.jinja")});
        assert_eq!(
            detect(&one.to_string()).unwrap().tool_format,
            Some(ToolFormat::KimiK2)
        );
        assert!(detect(r#"{"eos_token": "</s>"}"#).is_err());
        assert!(detect("  \n").is_err());
    }
}
