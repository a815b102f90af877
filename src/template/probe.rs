//! The probe conversation and its renders: the same conversation in the
//! shapes templates disagree on, with and without the generation prompt,
//! thinking on and off, cut at the tool call or the tool's result.

use minijinja::Value as JValue;
use minijinja::value::Serde;
use serde_json::{Value, json};

use super::jinja::environment;

const SYSTEM: &str = "PROBE_SYSTEM_TEXT";
pub(super) const USER: &str = "PROBE_USER_TEXT";
const USER2: &str = "PROBE_SECOND_USER_TEXT";
pub(super) const REASONING: &str = "PROBE_REASONING_TEXT";
pub(super) const ANSWER: &str = "PROBE_ANSWER_TEXT";
pub(super) const RESULT: &str = "PROBE_TOOL_RESULT";
const FUNCTION: &str = "get_weather";
/// Only the tool call's arguments hold it (not the tool schema).
pub(super) const ARG_VALUE: &str = "Paris";

/// How the assistant's tool call is written: templates disagree on whether
/// `arguments` is an object or a JSON string and on `content` beside calls.
#[derive(Debug, Clone, Copy)]
struct Shape {
    string_args: bool,
    null_content: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        string_args: false,
        null_content: false,
    },
    Shape {
        string_args: true,
        null_content: false,
    },
    Shape {
        string_args: false,
        null_content: true,
    },
    Shape {
        string_args: true,
        null_content: true,
    },
];

/// Where the conversation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turns {
    /// …, tool result, user again.
    Full,
    /// …, tool result.
    UpToTool,
    /// system, user, assistant (with or without its tool call).
    UpToAssistant { tool_calls: bool },
}

fn conversation(shape: Shape, turns: Turns) -> Value {
    let args = json!({"city": ARG_VALUE, "days": 3});
    let args = if shape.string_args {
        Value::String(args.to_string())
    } else {
        args
    };
    let with_calls = turns != Turns::UpToAssistant { tool_calls: false };
    let mut assistant = serde_json::Map::new();
    assistant.insert("role".into(), "assistant".into());
    assistant.insert("reasoning_content".into(), REASONING.into());
    let content = if shape.null_content && with_calls {
        Value::Null
    } else {
        ANSWER.into()
    };
    assistant.insert("content".into(), content);
    if with_calls {
        assistant.insert(
            "tool_calls".into(),
            json!([{
                "id": "call_probe_0",
                "type": "function",
                "function": {"name": FUNCTION, "arguments": args}
            }]),
        );
    }
    let mut messages = vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": USER}),
        Value::Object(assistant),
    ];
    let tool = json!({"role": "tool", "tool_call_id": "call_probe_0", "name": FUNCTION, "content": RESULT});
    match turns {
        Turns::UpToAssistant { .. } => {}
        Turns::UpToTool => messages.push(tool),
        Turns::Full => {
            messages.push(tool);
            messages.push(json!({"role": "user", "content": USER2}));
        }
    }
    Value::Array(messages)
}

fn context(messages: Value, generation_prompt: bool, thinking: bool) -> JValue {
    let tools = json!([{
        "type": "function",
        "function": {
            "name": FUNCTION,
            "description": "Get the weather forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city name."},
                    "days": {"type": "integer", "description": "How many days to forecast."}
                },
                "required": ["city"]
            }
        }
    }]);
    JValue::from(Serde(json!({
        "messages": messages,
        "tools": tools,
        "add_generation_prompt": generation_prompt,
        "enable_thinking": thinking,
        "thinking": thinking,
        "bos_token": "<s>",
        "eos_token": "</s>",
    })))
}

/// The renders the detection reads.
#[derive(Debug, Default)]
pub(super) struct Renders {
    /// The whole probe with the generation prompt, thinking on.
    pub(super) full: String,
    pub(super) full_no_gen: Option<String>,
    /// Thinking off (`enable_thinking` / `thinking` false).
    pub(super) full_off: Option<String>,
    pub(super) full_off_no_gen: Option<String>,
    pub(super) up_to_tool: Option<String>,
    /// Ending with the assistant turn, with and without its tool call.
    pub(super) with_calls: Option<String>,
    pub(super) without_calls: Option<String>,
}

pub(super) fn render_probes(source: &str) -> Result<Renders, String> {
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(|e| e.to_string())?;
    let render = |shape: Shape, turns: Turns, gen_prompt: bool, thinking: bool| {
        tmpl.render(context(conversation(shape, turns), gen_prompt, thinking))
            .map_err(|e| e.to_string())
    };
    // The first shape that renders the tool call; else the first that
    // renders at all.
    let mut first_error = None;
    let mut rendered = None;
    for shape in SHAPES {
        match render(shape, Turns::Full, true, true) {
            Ok(text) if text.contains(ARG_VALUE) => {
                rendered = Some((shape, text));
                break;
            }
            Ok(text) => {
                rendered.get_or_insert((shape, text));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((shape, full)) = rendered else {
        return Err(first_error.unwrap_or_else(|| "the template did not render".into()));
    };
    Ok(Renders {
        full,
        full_no_gen: render(shape, Turns::Full, false, true).ok(),
        full_off: render(shape, Turns::Full, true, false).ok(),
        full_off_no_gen: render(shape, Turns::Full, false, false).ok(),
        up_to_tool: render(shape, Turns::UpToTool, true, true).ok(),
        with_calls: render(
            shape,
            Turns::UpToAssistant { tool_calls: true },
            false,
            true,
        )
        .ok(),
        without_calls: render(
            shape,
            Turns::UpToAssistant { tool_calls: false },
            false,
            true,
        )
        .ok(),
    })
}
