//! OpenAI Responses ⇄ chat completions: requests to chat (and on to
//! Anthropic Messages), chat answers to `response` objects, chat streams to
//! Responses events, and the whole Anthropic → chat → Responses chain.
//!
//! Input: as the `anthropic` target (byte 0: bits 0-2 the translator, bit 3
//! generated). Properties: no panic; results are JSON objects or a
//! `TranslateError`; stream output is the same whatever the split, and its
//! events are named by their type, numbered from 0, with one terminal
//! event at most, last.

use bytes::Bytes;
use yallmp::endpoint::Endpoint as E;
use yallmp::protocol::anthropic::stream::MessagesToChat;
use yallmp::protocol::responses::stream::ChatToResponses;
use yallmp::protocol::{self, Convert};

use crate::anthropic::{
    CHAT_ANSWER, CHAT_STREAM, MESSAGE, MESSAGES_STREAM, body, object, split_spec,
};
use crate::streams;

/// Responses requests, in the shapes the API takes.
pub const REQUESTS: &[&str] = &[
    r#"{"model":"m","instructions":"Be nice.","input":"Hello","max_output_tokens":20,"temperature":0.2,"top_p":0.9,"user":"u1","metadata":{"k":"v"},"store":false}"#,
    r#"{"model":"m","input":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"input_text","text":"What is in this image?"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}]},{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"thought"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Let me check.","annotations":[]}]},{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},{"type":"function_call_output","call_id":"call_1","output":"sunny"}],"tools":[{"type":"function","name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true},{"type":"web_search"}],"tool_choice":{"type":"function","name":"get_weather"},"parallel_tool_calls":false,"stream":true}"#,
    r#"{"model":"m","input":"weather in Paris?","reasoning":{"effort":"low","summary":"auto"},"max_output_tokens":5000,"text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true},"verbosity":"low"},"tool_choice":"required","include":["reasoning.encrypted_content"],"truncation":"auto","service_tier":"auto"}"#,
];

pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let generated = sel & 8 != 0;
    let raw = |seeds: &[&str]| Bytes::from(body(generated, rest, seeds));
    match sel & 7 {
        0 | 1 => {
            if let Ok(out) = protocol::request(E::Responses, E::ChatCompletions, &raw(REQUESTS)) {
                let Some(v) = object("responses → chat", &out) else {
                    return;
                };
                assert!(v["messages"].is_array(), "messages: {v}");
            }
        }
        2 => {
            if let Ok(out) = protocol::request(E::Responses, E::Messages, &raw(REQUESTS)) {
                let Some(v) = object("responses → messages", &out) else {
                    return;
                };
                assert!(v["messages"].is_array(), "messages: {v}");
            }
        }
        3 => {
            if let Some(Ok(out)) =
                protocol::from_chat(E::Responses, E::ChatCompletions, &raw(&[CHAT_ANSWER]), "m")
            {
                let Some(v) = object("chat → response", &out) else {
                    return;
                };
                assert_eq!(v["object"], "response", "{v}");
                assert!(v["output"].is_array(), "output: {v}");
            }
        }
        4 => {
            // An Anthropic answer to a Responses client: to chat, then on.
            if let Some(Ok(chat)) = protocol::to_chat(E::Responses, E::Messages, &raw(&[MESSAGE])) {
                let out = protocol::from_chat(E::Responses, E::Messages, &chat, "m");
                let Some(Ok(out)) = out else {
                    panic!("a chat answer of ours does not translate: {out:?}");
                };
                let _ = object("message → chat → response", &out);
            }
        }
        5 | 6 => {
            let (input, cuts) = split_spec(generated, rest, &[CHAT_STREAM]);
            let chain = || -> Vec<Box<dyn Convert>> { vec![Box::new(ChatToResponses::new())] };
            let out = streams::check_splits(&chain, &input, &cuts);
            streams::check_responses(&out);
        }
        _ => {
            let (input, cuts) = split_spec(generated, rest, &[MESSAGES_STREAM]);
            let chain = || -> Vec<Box<dyn Convert>> {
                vec![
                    Box::new(MessagesToChat::at(true, 1)),
                    Box::new(ChatToResponses::new()),
                ]
            };
            let out = streams::check_splits(&chain, &input, &cuts);
            streams::check_responses(&out);
        }
    }
}
