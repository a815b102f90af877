//! What a translated request carries (issue 23): only the fields the
//! backend's dialect defines, each of the client's fields mapped or
//! dropped, the dropped ones listed in the request record; and thinking
//! blocks Anthropic cannot verify never sent to it. Mock upstreams capture
//! the body they receive; the record is read back from the log's files.

use serde_json::{Value, json};

use crate::support::anthropic::{fixture, post_with};
use crate::support::logged::{logged_proxy, of_kind, record};
use crate::support::*;

/// The `dropped` list of each attempt of the record `id` (empty when the
/// attempt has none).
async fn dropped(dir: &std::path::Path, id: &str) -> Vec<Vec<String>> {
    let ev = record(dir, id).await;
    of_kind(&ev, "attempt")
        .iter()
        .map(|a| {
            a["dropped"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// A request as Claude Code sends it (2.1): `context_management`,
/// `output_config.effort`, `thinking`, `metadata.user_id`.
fn claude_code(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc_session_1"},
        "stream": false
    })
}

#[tokio::test]
async fn messages_to_chat_carry_only_chat_fields_and_map_effort_per_style() {
    let mock = Mock::start(Reply::Echo).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n\
             \x20 - {{model_name: plain, model_params: {{api_base: '{u}'}}}}\n\
             \x20 - {{model_name: router, model_params: {{api_base: '{u}', reasoning: {{style: openrouter}}}}}}\n\
             \x20 - {{model_name: budget, model_params: {{api_base: '{u}', reasoning: {{style: anthropic}}}}}}\n\
             \x20 - {{model_name: quiet, model_params: {{api_base: '{u}', reasoning: {{style: none}}}}}}\n",
            u = mock.url
        ),
        None,
    )
    .await;
    for (i, model) in ["plain", "router", "budget", "quiet"].iter().enumerate() {
        let id = format!("cc-{model}");
        let (status, _, body) = post_with(
            &l.server,
            "/v1/messages",
            &claude_code(model),
            &[("x-request-id", &id)],
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        let up = mock.hits()[i].json();
        assert_eq!(mock.hits()[i].path, "/v1/chat/completions");
        // Nothing only Anthropic defines reaches the chat backend.
        for field in [
            "context_management",
            "output_config",
            "thinking",
            "metadata",
            "system",
        ] {
            // `style: anthropic` writes its own `thinking` (below).
            if !(field == "thinking" && *model == "budget") {
                assert!(up.get(field).is_none(), "{model}: {field} sent: {up}");
            }
        }
        assert_eq!(up["user"], "user_abc_session_1", "{model}");
        // The effort, in the field the backend's reasoning style reads.
        match *model {
            "plain" => assert_eq!(up["reasoning_effort"], "high", "{up}"),
            "router" => {
                assert_eq!(up["reasoning"], json!({"effort": "high"}), "{up}");
                assert!(up.get("reasoning_effort").is_none(), "{up}");
            }
            "budget" => {
                assert_eq!(
                    up["thinking"],
                    json!({"type": "enabled", "budget_tokens": 24576}),
                    "{up}"
                );
                assert!(up.get("reasoning_effort").is_none(), "{up}");
            }
            _ => assert!(up.get("reasoning_effort").is_none(), "{up}"),
        }
        // What was dropped is in the record, on the attempt.
        let d = dropped(&l.dir, &id).await;
        assert_eq!(d.len(), 1, "{d:?}");
        for field in ["context_management", "thinking"] {
            assert!(d[0].iter().any(|x| x == field), "{model}: {d:?}");
        }
        assert_eq!(
            d[0].iter().any(|x| x == "output_config.effort"),
            *model == "quiet",
            "{model}: {d:?}"
        );
    }
}

/// A request as Codex sends it (0.171): `client_metadata`,
/// `prompt_cache_key`, `store: false`, `include`, plus `safety_identifier`
/// and `prompt_cache_retention`.
fn codex(model: &str) -> Value {
    json!({
        "model": model,
        "instructions": "You are Codex.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": false,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019a-session",
        "prompt_cache_retention": "24h",
        "safety_identifier": "user-hash-1",
        "client_metadata": {"originator": "codex_cli_rs"}
    })
}

#[tokio::test]
async fn responses_to_chat_and_messages_carry_only_their_fields() {
    let chat = Mock::start(Reply::Echo).await;
    let anthropic = Mock::start(Reply::Raw(
        200,
        "application/json",
        fixture("message_response.json"),
    ))
    .await;
    let l = logged_proxy(
        &format!(
            "model_list:\n\
             \x20 - {{model_name: chat, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
             \x20 - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-ant-test}}}}\n\
             proxy_settings: {{enable_responses_endpoint: true}}\n",
            chat.url, anthropic.url
        ),
        None,
    )
    .await;
    let (status, _, body) = post_with(
        &l.server,
        "/v1/responses",
        &codex("chat"),
        &[("x-request-id", "codex-chat")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let up = chat.hits()[0].json();
    assert_eq!(chat.hits()[0].path, "/v1/chat/completions");
    // Chat's own parameters are carried...
    assert_eq!(up["prompt_cache_key"], "019a-session", "{up}");
    assert_eq!(up["safety_identifier"], "user-hash-1", "{up}");
    assert_eq!(up["prompt_cache_retention"], "24h", "{up}");
    assert_eq!(up["reasoning_effort"], "medium", "{up}");
    // ... and nothing chat does not define.
    for field in ["client_metadata", "store", "include", "reasoning", "input"] {
        assert!(up.get(field).is_none(), "{field} sent: {up}");
    }
    let d = dropped(&l.dir, "codex-chat").await;
    assert_eq!(
        d,
        [vec![
            "reasoning.summary",
            "client_metadata",
            "include",
            "store"
        ]]
    );

    let (status, _, body) = post_with(
        &l.server,
        "/v1/responses",
        &codex("claude"),
        &[("x-request-id", "codex-claude")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let up = anthropic.hits()[0].json();
    assert_eq!(anthropic.hits()[0].path, "/v1/messages");
    for field in [
        "client_metadata",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "store",
        "include",
        "reasoning_effort",
        "parallel_tool_calls",
    ] {
        assert!(up.get(field).is_none(), "{field} sent: {up}");
    }
    // Anthropic's one end-user field.
    assert_eq!(up["metadata"], json!({"user_id": "user-hash-1"}), "{up}");
    assert_eq!(up["system"], "You are Codex.");
    let d = dropped(&l.dir, "codex-claude").await;
    assert_eq!(d.len(), 1, "{d:?}");
    for field in [
        "client_metadata",
        "include",
        "store",
        "prompt_cache_key",
        "prompt_cache_retention",
    ] {
        assert!(d[0].iter().any(|x| x == field), "{field}: {d:?}");
    }
}

#[tokio::test]
async fn thinking_a_chat_backend_produced_is_not_sent_to_anthropic() {
    // Turn 1 on a chat backend: its reasoning comes back to the Messages
    // client as a thinking block Anthropic never signed.
    let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "glm",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Listing.", "reasoning_content": "Use ls.",
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"ls\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}});
    let chat = Mock::start(Reply::Json(200, completion)).await;
    let anthropic = Mock::start(Reply::Raw(
        200,
        "application/json",
        fixture("message_response.json"),
    ))
    .await;
    let l = logged_proxy(
        &format!(
            "model_list:\n\
             \x20 - {{model_name: glm, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-ant-test}}}}\n",
            chat.url, anthropic.url
        ),
        None,
    )
    .await;
    let tools = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
    let first = json!({"model": "glm", "max_tokens": 1000, "tools": tools,
        "messages": [{"role": "user", "content": "list"}]});
    let (status, _, body) = post(&l.server, "/v1/messages", &first).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let content = answer["content"].clone();
    assert_eq!(content[0]["type"], "thinking");
    assert_eq!(content[0]["signature"], "");

    // Turn 2 (`--continue` on Claude): the history goes to Anthropic, with
    // a signed block from an earlier Anthropic turn beside it.
    let second = json!({"model": "claude", "max_tokens": 1000, "tools": tools,
    "messages": [
        {"role": "user", "content": "start"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Signed.", "signature": "sig-real"},
            {"type": "text", "text": "Ok."}]},
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]}
    ]});
    let (status, _, body) = post_with(
        &l.server,
        "/v1/messages",
        &second,
        &[("x-request-id", "cont-1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let up = anthropic.hits()[0].json();
    // The unsigned block is gone; the signed one and the rest are as sent.
    assert_eq!(
        up["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "Signed.", "signature": "sig-real"})
    );
    let turn = up["messages"][3]["content"].as_array().unwrap();
    assert!(turn.iter().all(|b| b["type"] != "thinking"), "{up}");
    assert_eq!(turn.len(), content.as_array().unwrap().len() - 1);
    assert_eq!(turn[0]["type"], "text");
    assert_eq!(turn[1]["type"], "tool_use");
    assert_eq!(up["messages"][4], second["messages"][4]);
    let d = dropped(&l.dir, "cont-1").await;
    assert_eq!(d, [vec!["messages[3].content[0] (unsigned thinking)"]]);

    // A chat client resending the translated block (as `thinking_blocks`)
    // to an Anthropic backend: left out too.
    let chat_req = json!({"model": "claude", "max_tokens": 1000, "messages": [
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": "Listing.", "thinking_blocks": [{"type": "thinking", "thinking": "Use ls.", "signature": ""}]},
        {"role": "user", "content": "and?"}]});
    let (status, _, body) = post_with(
        &l.server,
        "/v1/chat/completions",
        &chat_req,
        &[("x-request-id", "chat-1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let up = anthropic.hits()[1].json();
    assert_eq!(
        up["messages"][1]["content"],
        json!([{"type": "text", "text": "Listing."}])
    );
    let d = dropped(&l.dir, "chat-1").await;
    assert_eq!(d, [vec!["messages[1].thinking_blocks (unsigned)"]]);
}
