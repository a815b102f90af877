//! The response parsers end to end: a mock upstream emits raw model text
//! (whole and streamed), the proxy turns it into reasoning, content and tool
//! calls, and the request log keeps both.

use std::time::Duration;

use serde_json::{Value, json};

use yallmp::config::{Config, Env};

use crate::support::vectors::{Answer, all as vectors, check};
use crate::support::*;

/// A config with one model `m` at the mock, with this `parse_tags` block as
/// the model's own parsers.
fn config(url: &str, parse_tags: &Value) -> String {
    format!(
        "model_list:\n  - model_name: m\n    model_params: {{api_base: '{url}'}}\n    parsers: {{parse_tags: {parse_tags}}}\n"
    )
}

fn completion(content: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
}

fn stream_frames(content: &str, step: usize) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    let mut frames: Vec<String> = chars
        .chunks(step.max(1))
        .map(|c| chunk(&c.iter().collect::<String>()))
        .collect();
    frames.push(format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    frames.push(DONE.to_string());
    frames
}

fn from_message(body: &str) -> Answer {
    let v: Value = serde_json::from_str(body).unwrap();
    let m = &v["choices"][0]["message"];
    Answer {
        reasoning: m["reasoning_content"].as_str().unwrap_or("").to_string(),
        content: m["content"].as_str().unwrap_or("").to_string(),
        tools: m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_string(),
                    t["function"]["name"].as_str().unwrap().to_string(),
                    t["function"]["arguments"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        finish: v["choices"][0]["finish_reason"].as_str().map(String::from),
    }
}

fn from_stream(body: &str) -> Answer {
    let mut a = Answer::default();
    for data in sse_data(body) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        let ch = &v["choices"][0];
        let d = &ch["delta"];
        a.reasoning
            .push_str(d["reasoning_content"].as_str().unwrap_or(""));
        a.content.push_str(d["content"].as_str().unwrap_or(""));
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let i = t["index"].as_u64().unwrap() as usize;
            if let Some(name) = t["function"]["name"].as_str() {
                a.tools
                    .push((t["id"].as_str().unwrap().into(), name.into(), String::new()));
            }
            a.tools[i]
                .2
                .push_str(t["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            a.finish = Some(f.to_string());
        }
    }
    a
}

#[tokio::test]
async fn every_vector_through_the_proxy_whole_and_streamed() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let content = v["content"].as_str().unwrap();
        let mock = Mock::start(Reply::Json(200, completion(content))).await;
        let server = proxy(&config(&mock.url, &v["parse_tags"])).await;
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let Some(t) = v.get("tools") {
            body["tools"] = t.clone();
        }
        let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{name}: {text}");
        check(name, &from_message(&text), &v["expect"]);
        for step in [1, 3, 7] {
            mock.push(Reply::Sse {
                frames: stream_frames(content, step),
                gap: Duration::ZERO,
            });
            body["stream"] = json!(true);
            let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
            assert_eq!(status, 200, "{name}");
            assert!(text.ends_with(DONE), "{name}: {text}");
            check(
                &format!("{name} (stream, {step} chars a chunk)"),
                &from_stream(&text),
                &v["expect"],
            );
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn global_parsers_with_per_model_override_and_paths() {
    let mock = Mock::start(Reply::Json(200, completion("<think>R</think>A"))).await;
    let yaml = format!(
        r#"
proxy_settings:
  parsers:
    enabled: true
    response: [parse_tags]
model_list:
  - model_name: global
    model_params: {{api_base: '{url}'}}
  - model_name: own
    model_params: {{api_base: '{url}'}}
    parsers:
      response: [parse_tags, swap_reasoning_content]
  - model_name: off
    model_params: {{api_base: '{url}'}}
    parsers: {{enabled: false}}
"#,
        url = mock.url
    );
    let server = proxy(&yaml).await;
    let ask = |model: &str| json!({"model": model, "messages": []});
    let (_, _, text) = post(&server, "/v1/chat/completions", &ask("global")).await;
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["choices"][0]["message"]["reasoning_content"], "R");
    assert_eq!(m["choices"][0]["message"]["reasoning"], "R");
    assert_eq!(m["choices"][0]["message"]["content"], "A");
    let (_, _, text) = post(&server, "/v1/chat/completions", &ask("own")).await;
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["choices"][0]["message"]["content"], "<think>R</think>\nA");
    assert!(
        m["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    let (_, _, text) = post(&server, "/v1/chat/completions", &ask("off")).await;
    assert_eq!(text, completion("<think>R</think>A").to_string());
    // Only the configured paths: the same JSON on /v1/embeddings is left alone.
    let (_, _, text) = post(&server, "/v1/embeddings", &ask("global")).await;
    assert_eq!(text, completion("<think>R</think>A").to_string());
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_parser_keys_are_config_errors() {
    let yaml = "proxy_settings:\n  parsers:\n    parse_tags: {tool_fromat: hermes}\n";
    let err = config_error(yaml);
    assert!(err.to_string().contains("tool_fromat"), "{err}");
    let yaml = "proxy_settings:\n  parsers:\n    response: [parse_tag]\n";
    let err = config_error(yaml);
    assert!(err.to_string().contains("parse_tag"), "{err}");
}

#[tokio::test]
async fn the_record_keeps_raw_and_parsed_output_and_parse_failures() {
    let raw = "<think>R</think><tool_call>{\"name\": \"f\", \"arguments\": {bad}</tool_call>";
    let mock = Mock::start(Reply::Json(200, completion(raw))).await;
    let yaml = format!(
        "proxy_settings:\n  logging: {{log_parsed_response: true, log_parsed_stream: true, database: {{enabled: false}}}}\n{}",
        config(&mock.url, &json!({"tool_format": "hermes"}))
    );
    let mut cfg =
        Config::from_yaml(&yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([])).unwrap();
    cfg.server.port = 0;
    let dir = isolate_logs(&mut cfg);
    let server = yallmp::serve(cfg).await.unwrap();
    let body = json!({"model": "m", "messages": []});
    let (_, _, text) = post(&server, "/v1/chat/completions", &body).await;
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["choices"][0]["message"]["reasoning_content"], "R");
    assert_eq!(
        m["choices"][0]["message"]["content"],
        "<tool_call>{\"name\": \"f\", \"arguments\": {bad}</tool_call>"
    );
    mock.push(Reply::Sse {
        frames: stream_frames(raw, 4),
        gap: Duration::ZERO,
    });
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (_, _, _) = post(&server, "/v1/chat/completions", &sbody).await;
    server.shutdown().await;
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("requests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".parsed.log"))
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let mut saw_stream = false;
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kind = |k: &str| events.iter().find(|e| e["event"] == k).cloned();
        let parsed = kind("parsed").unwrap_or_else(|| panic!("no parsed event in {text}"));
        assert_eq!(parsed["data"]["choices"][0]["reasoning"], "R", "{text}");
        assert!(
            parsed["data"]["errors"][0]
                .as_str()
                .unwrap()
                .contains("not parsed")
        );
        let outcome = kind("outcome").unwrap();
        assert!(
            outcome.to_string().contains("response parsers"),
            "the record says parsing failed: {outcome}"
        );
        // The raw upstream output is kept beside the parsed one.
        let resp = kind("response").unwrap();
        if resp["stream"] == false {
            assert!(resp.to_string().contains("<think>R</think>"), "{resp}");
        } else {
            saw_stream = true;
            let chunks: String = events
                .iter()
                .filter(|e| e["event"] == "chunk")
                .map(|e| e.to_string())
                .collect();
            assert!(chunks.contains("<thi"), "raw frames recorded: {chunks}");
            assert!(
                parsed["data"]["frames"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            );
        }
    }
    assert!(saw_stream);
}

/// `log_parsed_stream` kept every frame the client got, uncapped: a long
/// stream held all of it in memory for the log. It is now bounded by the
/// log's `max_body_bytes` like the stream's own frames, and the parsed
/// output says `"truncated": true`.
#[tokio::test]
async fn the_parsed_stream_kept_for_the_log_is_bounded() {
    let content = "word ".repeat(4_000);
    let mock = Mock::start(Reply::Sse {
        frames: stream_frames(&content, 5),
        gap: Duration::ZERO,
    })
    .await;
    let yaml = format!(
        "proxy_settings:\n  logging: {{log_parsed_stream: true, max_body_bytes: 4000, database: {{enabled: false}}}}\n{}",
        config(&mock.url, &json!({"tool_format": "hermes"}))
    );
    let mut cfg =
        Config::from_yaml(&yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([])).unwrap();
    cfg.server.port = 0;
    let dir = isolate_logs(&mut cfg);
    let server = yallmp::serve(cfg).await.unwrap();
    let body = json!({"model": "m", "messages": [], "stream": true});
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    // The client got the whole stream.
    let got: String = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(got, content);
    server.shutdown().await;
    let main = std::fs::read_dir(dir.join("requests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.to_string_lossy().ends_with(".parsed.log"))
        .unwrap();
    let text = std::fs::read_to_string(&main).unwrap();
    let parsed = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "parsed")
        .unwrap_or_else(|| panic!("no parsed event in {text}"));
    assert_eq!(parsed["data"]["truncated"], true, "{parsed}");
    let kept = parsed["data"].to_string().len();
    // 4,000 bytes of frames and text, plus JSON quoting: far from the
    // ~4,000 frames the stream had (over 500 KB kept before).
    assert!(kept < 20_000, "{kept} bytes of parsed output kept");
}
