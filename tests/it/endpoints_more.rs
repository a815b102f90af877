//! The pass-through endpoints (audio, images, moderations, rerank) routed
//! by model, multipart bodies (byte-exact, replayed on a retry and a
//! fallback, bounded by `max_body_bytes`), binary answers, virtual keys'
//! models, other dialects refused, and `/v1/files`, `/v1/batches` to the
//! backend `proxy_settings.files_model` names.

use serde_json::{Value, json};

use crate::support::logged::{logged_proxy, of_kind, record};
use crate::support::*;

const NO_LOG: &str =
    "proxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n";

/// A form as the OpenAI SDK sends it: the file first, then the fields.
fn form(boundary: &str, audio: &[u8], model: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes());
    b.extend_from_slice(audio);
    b.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// Bytes that are not text, across every value.
fn audio(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

async fn send_form(
    server: &yallmp::Server,
    path: &str,
    body: Vec<u8>,
    key: Option<&str>,
) -> (u16, http::HeaderMap, String) {
    let mut r = client()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The parts of a multipart body the mock received, by name.
async fn parts(hit: &Hit) -> Vec<(String, Option<String>, Vec<u8>)> {
    let ct = hit.headers["content-type"].to_str().unwrap();
    let boundary = multer::parse_boundary(ct).unwrap();
    let raw = hit.raw.clone();
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(raw) });
    let mut m = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(f) = m.next_field().await.unwrap() {
        let name = f.name().unwrap().to_string();
        let file = f.file_name().map(str::to_string);
        out.push((name, file, f.bytes().await.unwrap().to_vec()));
    }
    out
}

#[tokio::test]
async fn a_transcription_form_arrives_intact_with_the_backends_model_and_key() {
    let mock = Mock::start(Reply::Json(200, json!({"text": "hello"}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: whisper, model_params: {{api_base: '{}', model: whisper-1, api_key: sk-up}}}}\n{NO_LOG}",
        mock.url
    );
    let server = proxy(&yaml).await;
    let wav = audio(3 * 1024 * 1024);
    let (s, h, body) = send_form(
        &server,
        "/v1/audio/transcriptions",
        form("b0undary", &wav, "whisper"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, r#"{"text":"hello"}"#);
    assert_eq!(h["x-yallmp-backend"], "whisper#1");
    let hit = &mock.hits()[0];
    assert_eq!(hit.method, http::Method::POST);
    assert_eq!(hit.path, "/v1/audio/transcriptions");
    assert_eq!(hit.headers["authorization"], "Bearer sk-up");
    assert!(
        hit.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    let got = parts(hit).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].0, "file");
    assert_eq!(got[0].1.as_deref(), Some("a.wav"));
    assert!(got[0].2 == wav, "the file part is not byte-exact");
    assert_eq!(
        (got[1].0.as_str(), got[1].2.as_slice()),
        ("model", &b"whisper-1"[..])
    );
    assert_eq!(
        (got[2].0.as_str(), got[2].2.as_slice()),
        ("language", &b"en"[..])
    );
    // Translations and image edits take forms the same way.
    let (s, _, _) = send_form(
        &server,
        "/v1/audio/translations",
        form("b0undary", &wav[..100], "whisper"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(mock.hits()[1].path, "/v1/audio/translations");
    let (s, _, _) = send_form(
        &server,
        "/images/edits",
        form("b0undary", &wav[..100], "whisper"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(mock.hits()[2].path, "/v1/images/edits");
    // No model field: the client's error.
    let mut no_model = Vec::new();
    no_model.extend_from_slice(
        b"--b0undary\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b0undary--\r\n",
    );
    let (s, _, body) = send_form(&server, "/v1/audio/transcriptions", no_model, None).await;
    assert_eq!(s, 400, "{body}");
    // Not multipart at all.
    let (s, _, body) = post(
        &server,
        "/v1/audio/transcriptions",
        &json!({"model": "whisper"}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn a_form_is_sent_again_exactly_on_a_retry_and_a_fallback() {
    let first = Mock::start(Reply::Json(503, json!({"error": {"message": "busy"}}))).await;
    let second = Mock::start(Reply::Json(200, json!({"text": "ok"}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: a, model_params: {{api_base: '{}'}}}}\n  - {{model_name: b, model_params: {{api_base: '{}', model: other}}}}\nrouter_settings: {{num_retries: 1, retry_backoff_ms: 10, fallbacks: [{{a: [b]}}]}}\n{NO_LOG}",
        first.url, second.url
    );
    let server = proxy(&yaml).await;
    // Past the memory threshold: spooled to a file, read back per attempt.
    let wav = audio(2 * 1024 * 1024 + 17);
    let (s, h, body) = send_form(
        &server,
        "/v1/audio/transcriptions",
        form("b0undary", &wav, "a"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["x-yallmp-attempts"], "3");
    let hits: Vec<Hit> = first.hits().into_iter().chain(second.hits()).collect();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].raw, hits[1].raw, "a retry sends the same bytes");
    for (hit, model) in hits.iter().zip(["a", "a", "other"]) {
        let got = parts(hit).await;
        assert!(got[0].2 == wav);
        assert_eq!(got[1].2, model.as_bytes());
    }
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413() {
    let mock = Mock::start(Reply::Json(200, json!({"text": "x"}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: w, model_params: {{api_base: '{}'}}}}\nproxy_settings: {{server: {{max_body_bytes: 10000}}, logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}\n",
        mock.url
    );
    let server = proxy(&yaml).await;
    let (s, _, body) = send_form(
        &server,
        "/v1/audio/transcriptions",
        form("b0undary", &audio(20_000), "w"),
        None,
    )
    .await;
    assert_eq!(s, 413, "{body}");
    // Without a declared length too (a chunked body).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = form("b0undary", &audio(20_000), "w")
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = client()
        .post(format!("{}/v1/audio/transcriptions", server.url()))
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn speech_comes_back_as_bytes_with_its_type_and_is_logged_as_a_size() {
    let mock = Mock::start(Reply::Raw(
        200,
        "audio/mpeg",
        "ID3\u{1}fake-mp3-bytes".into(),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - {{model_name: tts, model_params: {{api_base: '{}', model: tts-1}}}}\n",
        mock.url
    );
    let logged = logged_proxy(&yaml, None).await;
    let r = client()
        .post(format!("{}/v1/audio/speech", logged.server.url()))
        .json(&json!({"model": "tts", "input": "hi", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        "ID3\u{1}fake-mp3-bytes".as_bytes()
    );
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/audio/speech");
    assert_eq!(hit.json()["model"], "tts-1");
    assert_eq!(hit.headers["content-type"], "application/json");
    let ev = record(&logged.dir, &id).await;
    let resp = of_kind(&ev, "response")[0];
    assert_eq!(
        resp["body"]["binary"]["content_type"], "audio/mpeg",
        "{resp}"
    );
    assert_eq!(resp["body"]["binary"]["size"], 18);
}

#[tokio::test]
async fn a_multipart_record_keeps_the_fields_and_the_files_sizes_not_their_bytes() {
    let mock = Mock::start(Reply::Raw(200, "text/plain", "hello there".into())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: w, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    );
    let logged = logged_proxy(&yaml, None).await;
    let wav = audio(70_000);
    let (s, h, body) = send_form(
        &logged.server,
        "/v1/audio/transcriptions",
        form("b0undary", &wav, "w"),
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "hello there"));
    assert_eq!(h["content-type"], "text/plain");
    let id = h["x-request-id"].to_str().unwrap().to_string();
    let ev = record(&logged.dir, &id).await;
    let req = of_kind(&ev, "request")[0];
    let logged_form = &req["body"]["multipart"];
    assert_eq!(
        logged_form["fields"],
        json!({"model": "w", "language": "en"}),
        "{req}"
    );
    assert_eq!(
        logged_form["files"][0],
        json!({"name": "file", "filename": "a.wav", "content_type": "audio/wav", "size": 70_000})
    );
    // Nothing else of the body: the file's bytes are not in the record.
    assert_eq!(req["body"].as_object().unwrap().len(), 1, "{req}");
    assert!(req.to_string().len() < 2000, "{req}");
    let resp = of_kind(&ev, "response")[0];
    assert_eq!(
        resp["body"]["binary"],
        json!({"content_type": "text/plain", "size": 11}),
        "{resp}"
    );

    // `log_multipart_files: true`: the file's bytes too, as base64.
    let yaml = format!(
        "model_list:\n  - {{model_name: w, model_params: {{api_base: '{}'}}}}\nproxy_settings: {{logging: {{log_multipart_files: true}}}}\n",
        mock.url
    );
    let logged = logged_proxy(&yaml, None).await;
    let (s, h, _) = send_form(
        &logged.server,
        "/v1/audio/transcriptions",
        form("b0undary", &wav, "w"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let id = h["x-request-id"].to_str().unwrap().to_string();
    let ev = record(&logged.dir, &id).await;
    let file = &of_kind(&ev, "request")[0]["body"]["multipart"]["files"][0];
    use base64::Engine as _;
    let logged_bytes = base64::engine::general_purpose::STANDARD
        .decode(file["base64"].as_str().unwrap())
        .unwrap();
    assert!(logged_bytes == wav);
}

#[tokio::test]
async fn json_endpoints_pass_through_by_model() {
    let mock = Mock::start(Reply::Json(200, json!({"ok": true}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: omni-moderation, model_params: {{api_base: '{}'}}}}\n{NO_LOG}",
        mock.url, mock.url
    );
    let server = proxy(&yaml).await;
    for (path, upstream) in [
        ("/v1/images/generations", "/v1/images/generations"),
        ("/v1/moderations", "/v1/moderations"),
        ("/v1/rerank", "/v1/rerank"),
        ("/rerank", "/v1/rerank"),
        ("/v2/rerank", "/v1/rerank"),
    ] {
        let body = json!({"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 1, "temperature_left_alone": 1});
        let (s, _, text) = post(&server, path, &body).await;
        assert_eq!(s, 200, "{path}: {text}");
        let hit = mock.hits().pop().unwrap();
        assert_eq!(hit.path, upstream);
        assert_eq!(hit.json(), body, "{path}: passed as it came");
    }
    // A moderation without a model: the model named `*moderation*`.
    let (s, h, _) = post(&server, "/v1/moderations", &json!({"input": "hi"})).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-yallmp-backend"], "omni-moderation#1");
}

#[tokio::test]
async fn other_dialects_refuse_and_the_stub_answers() {
    let yaml = format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_base: 'http://127.0.0.1:9', api_type: anthropic}}}}\n  - {{model_name: s, model_params: {{api_type: stub}}}}\n{NO_LOG}"
    );
    let server = proxy(&yaml).await;
    let (s, _, body) = post(
        &server,
        "/v1/images/generations",
        &json!({"model": "claude", "prompt": "x"}),
    )
    .await;
    assert_eq!(s, 501, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("images/generations"),
        "{e}"
    );
    // The stub: every endpoint in a valid shape.
    let (s, _, body) = post(
        &server,
        "/v1/images/generations",
        &json!({"model": "s", "prompt": "x", "n": 2}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (s, _, body) = post(
        &server,
        "/v1/rerank",
        &json!({"model": "s", "query": "cat", "documents": ["dog", "a cat"], "top_n": 1}),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["index"], 1, "{v}");
    let (s, _, body) = post(
        &server,
        "/v1/moderations",
        &json!({"model": "s", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = client()
        .post(format!("{}/v1/audio/speech", server.url()))
        .json(&json!({"model": "s", "input": "hi", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert!(r.bytes().await.unwrap().starts_with(b"RIFF"));
    let (s, _, body) = send_form(
        &server,
        "/v1/audio/transcriptions",
        form("b0undary", &audio(10), "s"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"text\""), "{body}");
}

#[tokio::test]
async fn a_virtual_key_may_use_only_its_models_here_too() {
    let mock = Mock::start(Reply::Json(200, json!({"text": "ok"}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: w1, model_params: {{api_base: '{u}'}}}}\n  - {{model_name: w2, model_params: {{api_base: '{u}'}}}}\nproxy_settings: {{files_model: w2}}\n",
        u = mock.url
    );
    let logged = logged_proxy(&yaml, None).await;
    let server = &logged.server;
    let r = client()
        .post(format!("{}/admin/keys", server.url()))
        .json(&json!({"name": "k", "models": ["w1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = send_form(
        server,
        "/v1/audio/transcriptions",
        form("b0undary", &audio(10), "w1"),
        Some(&key),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = send_form(
        server,
        "/v1/audio/transcriptions",
        form("b0undary", &audio(10), "w2"),
        Some(&key),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = send_form(
        server,
        "/v1/audio/transcriptions",
        form("b0undary", &audio(10), "w1"),
        None,
    )
    .await;
    assert_eq!(s, 401);
    // Files go to w2's backend, which this key may not use.
    let r = client()
        .get(format!("{}/v1/files", server.url()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn files_and_batches_go_to_the_named_backend() {
    let files = Mock::start(Reply::Json(200, json!({"object": "list", "data": []}))).await;
    let other = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: chat, model_params: {{api_base: '{}'}}}}\n  - {{model_name: store, model_params: {{api_base: '{}', api_key: sk-files}}}}\nproxy_settings: {{files_model: store, logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}\n",
        other.url, files.url
    );
    let server = proxy(&yaml).await;
    let upload = form("b0undary", &audio(5000), "ignored");
    let (s, _, body) = send_form(&server, "/v1/files", upload.clone(), None).await;
    assert_eq!(s, 200, "{body}");
    files.push(Reply::Raw(
        200,
        "application/octet-stream",
        "line1\nline2\n".into(),
    ));
    let r = client()
        .get(format!("{}/v1/files/file-1/content", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "line1\nline2\n");
    for (method, path) in [
        ("GET", "/v1/files?purpose=batch&limit=2"),
        ("GET", "/v1/files/file-1"),
        ("DELETE", "/v1/files/file-1"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/b-1"),
        ("POST", "/v1/batches/b-1/cancel"),
    ] {
        let mut r = client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
        if method == "POST" {
            r = r.json(&json!({"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"}));
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{method} {path}");
    }
    let hits = files.hits();
    assert_eq!(hits.len(), 9);
    assert_eq!(
        (hits[0].method.as_str(), hits[0].path.as_str()),
        ("POST", "/v1/files")
    );
    assert_eq!(
        &hits[0].raw[..],
        &upload[..],
        "the upload is relayed byte for byte"
    );
    assert_eq!(
        hits[0].headers["content-type"],
        "multipart/form-data; boundary=b0undary"
    );
    assert_eq!(hits[0].headers["authorization"], "Bearer sk-files");
    assert_eq!(hits[1].path, "/v1/files/file-1/content");
    assert_eq!(
        (hits[2].path.as_str(), hits[2].query.as_str()),
        ("/v1/files", "purpose=batch&limit=2")
    );
    assert_eq!(hits[4].method, http::Method::DELETE);
    assert_eq!(hits[5].json()["input_file_id"], "file-1");
    assert_eq!(
        (hits[8].method.as_str(), hits[8].path.as_str()),
        ("POST", "/v1/batches/b-1/cancel")
    );
    assert_eq!(other.count(), 0);

    // None configured: an OpenAI-shaped 404.
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: chat, model_params: {{api_base: '{}'}}}}\n{NO_LOG}",
        other.url
    ))
    .await;
    let r = client()
        .get(format!("{}/v1/files", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("files_model"),
        "{e}"
    );
}
