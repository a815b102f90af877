//! A whole chat completion as a Responses API `response` object.

use serde_json::{Value, json};

use crate::protocol::TranslateError;

/// Chat usage → Responses usage.
pub fn usage(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/prompt_tokens"), n("/completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        // Saturating: the counts are the upstream's numbers, any u64.
        "total_tokens": input.saturating_add(output),
    })
}

/// The `response` object around `output`: status `completed`, or
/// `incomplete` when the answer hit its token limit.
pub fn envelope(
    id: &str,
    model: &Value,
    created: u64,
    output: Vec<Value>,
    finish: Option<&str>,
    usage_v: Option<Value>,
) -> Value {
    let incomplete = matches!(finish, Some("length"));
    json!({
        "id": if id.starts_with("resp_") { id.to_string() } else { format!("resp_{id}") },
        "object": "response",
        "created_at": created,
        "status": if incomplete { "incomplete" } else { "completed" },
        "error": null,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage_v,
    })
}

/// A reasoning output item.
pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

/// A message output item.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A function call output item.
pub fn call_item(id: &str, call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// Chat completion → Responses `response`; `model` (the requested one)
/// names it when the completion does not (Responses clients such as the AI
/// SDK require a string).
pub fn from_chat(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let c: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let id = c["id"].as_str().unwrap_or("chat");
    let choice = &c["choices"][0];
    let msg = &choice["message"];
    let mut output = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .or_else(|| msg.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(&format!("rs_{id}"), r));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(&format!("msg_{id}"), t, "completed"));
    }
    for (i, call) in msg["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        output.push(call_item(
            &format!("fc_{id}_{i}"),
            &call["id"],
            &call["function"]["name"],
            call["function"]["arguments"].as_str().unwrap_or(""),
            "completed",
        ));
    }
    let created = c["created"].as_u64().unwrap_or(0);
    let model = match c.get("model").filter(|m| m.is_string()) {
        Some(m) => m.clone(),
        None => json!(model),
    };
    Ok(envelope(
        id,
        &model,
        created,
        output,
        choice["finish_reason"].as_str(),
        c.get("usage").filter(|u| u.is_object()).map(usage),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_usage_counts_saturate() {
        // Found by fuzzing (fuzz/corpus/responses/regress-usage-overflow):
        // the total overflowed (a panic with overflow checks on).
        let u = usage(&json!({"prompt_tokens": u64::MAX, "completion_tokens": 2}));
        assert_eq!(u["total_tokens"], u64::MAX);
        assert_eq!(u["input_tokens"], u64::MAX);
    }

    #[test]
    fn chat_answer_becomes_a_response() {
        let body = br#"{"id":"chatcmpl-7","object":"chat.completion","created":5,"model":"m",
          "choices":[{"index":0,"message":{"role":"assistant","content":"Calling.","reasoning_content":"think",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":6}}}"#;
        let r = from_chat(body, "asked").unwrap();
        assert_eq!(r["id"], "resp_chatcmpl-7");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["created_at"], 5);
        assert_eq!(
            r["output"],
            json!([
                {"type": "reasoning", "id": "rs_chatcmpl-7", "summary": [{"type": "summary_text", "text": "think"}]},
                {"type": "message", "id": "msg_chatcmpl-7", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Calling.", "annotations": []}]},
                {"type": "function_call", "id": "fc_chatcmpl-7_0", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}", "status": "completed"}
            ])
        );
        assert_eq!(r["usage"]["input_tokens"], 10);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 6);
        assert_eq!(r["usage"]["total_tokens"], 14);
        let cut = from_chat(
            br#"{"id":"x","choices":[{"message":{"content":"ab"},"finish_reason":"length"}]}"#,
            "asked",
        )
        .unwrap();
        assert_eq!(cut["status"], "incomplete");
        assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");
        // No model in the completion: the requested one names the response.
        assert_eq!(cut["model"], "asked");
        // One in it wins.
        assert_eq!(r["model"], "m");
    }
}
