//! `api_type: vertex`: the project/location URL, and the access token from
//! a service-account key: a mock token endpoint verifies the JWT's RS256
//! signature with the key's public half (a throwaway key made with
//! `openssl`) and its claims, and hands out tokens; one exchange serves
//! several requests, an expiring token is fetched again, a refused
//! exchange is a clear 502. A given `api_key` is a bearer token as is.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use serde_json::{Value, json};

use crate::support::{Mock, Reply, post, proxy};

const LOGS_OFF: &str =
    "proxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n";

/// A throwaway RSA key: (private PEM, public PEM).
fn rsa_key(dir: &std::path::Path) -> (String, String) {
    let key = dir.join("key.pem");
    let public = dir.join("pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test key")
        .success();
    assert!(ok, "openssl genpkey failed");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey failed");
    (
        std::fs::read_to_string(key).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

/// The token endpoint: what it accepted, and what it answers.
struct TokenState {
    public: String,
    aud: String,
    email: String,
    expires_in: u64,
    fail: bool,
    issued: Mutex<Vec<Value>>,
}

async fn token(State(s): State<Arc<TokenState>>, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let form: std::collections::HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let refuse = |why: String| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(format!("grant_type: {body}"));
    }
    let Some(jwt) = form.get("assertion") else {
        return refuse("no assertion".into());
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(s.public.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[&s.aud]);
    v.set_issuer(&[&s.email]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Value>(jwt, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => return refuse(format!("bad assertion: {e}")),
    };
    if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
        return refuse(format!("scope: {claims}"));
    }
    if claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() > 3600 {
        return refuse("lifetime over an hour".into());
    }
    if s.fail {
        return refuse("Invalid JWT Signature.".into());
    }
    // Slow enough that concurrent requests wait on one exchange.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut issued = s.issued.lock().unwrap();
    issued.push(claims);
    let n = issued.len();
    axum::Json(json!({"access_token": format!("ya29.tok-{n}"), "expires_in": s.expires_in, "token_type": "Bearer"}))
        .into_response()
}

struct Fixture {
    tokens: Arc<TokenState>,
    token_uri: String,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A key file naming a fresh token endpoint.
async fn fixture(email: &str, expires_in: u64, fail: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_key(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_uri = format!("http://{}/token", listener.local_addr().unwrap());
    let tokens = Arc::new(TokenState {
        public,
        aud: token_uri.clone(),
        email: email.to_string(),
        expires_in,
        fail,
        issued: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .with_state(tokens.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let key_file = dir.path().join("sa.json");
    std::fs::write(
        &key_file,
        json!({"type": "service_account", "project_id": "p1", "private_key_id": "kid1",
            "private_key": private, "client_email": email, "client_id": "1",
            "token_uri": token_uri})
        .to_string(),
    )
    .unwrap();
    Fixture {
        tokens,
        token_uri,
        key_file,
        _dir: dir,
    }
}

fn answer() -> Value {
    json!({"candidates": [{"content": {"parts": [{"text": "Hi from Vertex"}], "role": "model"},
        "finishReason": "STOP", "avgLogprobs": -0.1}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-pro", "createTime": "2025-06-01T00:00:00Z", "responseId": "v1"})
}

fn origin(mock: &Mock) -> String {
    mock.url
        .strip_suffix("/v1")
        .unwrap_or(&mock.url)
        .to_string()
}

async fn chat(server: &yallmp::Server) -> (u16, String) {
    let (status, _, body) = post(
        server,
        "/v1/chat/completions",
        &json!({"model": "vx", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn service_account_token_is_exchanged_once_and_shared() {
    let f = fixture("sa-one@p1.iam.gserviceaccount.com", 3600, false).await;
    let v = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: vx, litellm_params: {{model: vertex_ai/gemini-2.5-pro, vertex_project: p1, vertex_location: europe-west4, vertex_credentials: '{}', api_base: '{}'}}}}\n{LOGS_OFF}",
        f.key_file.display(),
        origin(&v)
    );
    let server = proxy(&yaml).await;
    // Three at once: one exchange, the others wait for it.
    let answers = futures::future::join_all((0..3).map(|_| chat(&server))).await;
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
        let c: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(c["choices"][0]["message"]["content"], "Hi from Vertex");
    }
    // A stream later reuses the token.
    v.push(Reply::Sse {
        frames: vec![format!(
            "data: {}\r\n\r\n",
            json!({"candidates": [{"content": {"parts": [{"text": "streamed"}], "role": "model"}, "finishReason": "STOP"}]})
        )],
        gap: std::time::Duration::from_millis(1),
    });
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "vx", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("streamed") && body.contains("[DONE]"),
        "{body}"
    );
    assert_eq!(
        f.tokens.issued.lock().unwrap().len(),
        1,
        "one exchange for four requests"
    );
    let claims = f.tokens.issued.lock().unwrap()[0].clone();
    assert_eq!(claims["aud"], f.token_uri.as_str());
    let hits = v.hits();
    assert_eq!(hits.len(), 4);
    for (i, h) in hits.iter().enumerate() {
        let method = if i == 3 {
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        assert_eq!(
            h.path,
            format!(
                "/v1/projects/p1/locations/europe-west4/publishers/google/models/gemini-2.5-pro:{method}"
            )
        );
        assert_eq!(h.headers["authorization"], "Bearer ya29.tok-1");
        assert!(h.headers.get("x-goog-api-key").is_none());
        assert_eq!(
            h.json()["contents"][0],
            json!({"role": "user", "parts": [{"text": "Hi"}]})
        );
    }
}

#[tokio::test]
async fn an_expiring_token_is_fetched_again() {
    // Tokens that live less than the refresh margin are used once.
    let f = fixture("sa-short@p1.iam.gserviceaccount.com", 60, false).await;
    let v = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: vx, model_params: {{api_type: vertex, model: gemini-2.5-pro, vertex_project: p1, vertex_location: global, api_base: '{}'}}}}\n{LOGS_OFF}",
        origin(&v)
    );
    let server = crate::support::proxy_with_env(
        &yaml,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            f.key_file.to_str().unwrap(),
        )],
    )
    .await;
    for _ in 0..2 {
        let (status, body) = chat(&server).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(f.tokens.issued.lock().unwrap().len(), 2);
    let hits = v.hits();
    assert_eq!(hits[0].headers["authorization"], "Bearer ya29.tok-1");
    assert_eq!(hits[1].headers["authorization"], "Bearer ya29.tok-2");
    assert_eq!(
        hits[0].path,
        "/v1/projects/p1/locations/global/publishers/google/models/gemini-2.5-pro:generateContent"
    );
}

#[tokio::test]
async fn a_refused_exchange_is_a_clear_502_and_falls_back() {
    let f = fixture("sa-bad@p1.iam.gserviceaccount.com", 3600, true).await;
    let v = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: vx, model_params: {{api_type: vertex, model: gemini-2.5-pro, vertex_project: p1, vertex_credentials: '{}', api_base: '{}'}}}}\nrouter_settings: {{num_retries: 0}}\n{LOGS_OFF}",
        f.key_file.display(),
        origin(&v)
    );
    let server = proxy(&yaml).await;
    let (status, body) = chat(&server).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("access token") && body.contains("Invalid JWT Signature"),
        "{body}"
    );
    assert_eq!(v.count(), 0, "nothing reaches Vertex without a token");

    let spare = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: vx, model_params: {{api_type: vertex, model: gemini-2.5-pro, vertex_project: p1, vertex_credentials: '{}', api_base: '{}'}}, fallbacks: [spare]}}\n  - {{model_name: spare, model_params: {{api_type: vertex, model: gemini-2.5-flash, vertex_project: p2, api_key: given-token, api_base: '{}'}}}}\nrouter_settings: {{num_retries: 0}}\n{LOGS_OFF}",
        f.key_file.display(),
        origin(&v),
        origin(&spare)
    );
    let server = proxy(&yaml).await;
    let (status, body) = chat(&server).await;
    assert_eq!(status, 200, "{body}");
    let hit = &spare.hits()[0];
    assert_eq!(hit.headers["authorization"], "Bearer given-token");
    assert_eq!(
        hit.path,
        "/v1/projects/p2/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    );
}

#[tokio::test]
async fn config_errors_are_precise() {
    let e = crate::support::config_error(
        "model_list:\n  - {model_name: v, model_params: {api_type: vertex, model: gemini-2.5-pro, api_key: t}}\n",
    )
    .to_string();
    assert!(
        e.contains("vertex_project") && e.contains("required"),
        "{e}"
    );
    let e = crate::support::config_error(
        "model_list:\n  - {model_name: v, model_params: {api_type: vertex, model: gemini-2.5-pro, vertex_project: p, vertex_credentials: /nonexistent/sa.json}}\n",
    )
    .to_string();
    assert!(
        e.contains("cannot read the credentials file `/nonexistent/sa.json`"),
        "{e}"
    );
    let e = crate::support::config_error(
        "model_list:\n  - {model_name: v, model_params: {api_type: vertex, model: gemini-2.5-pro, vertex_project: p}}\n",
    )
    .to_string();
    assert!(e.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{e}");
    let b = crate::support::backend(
        "model_list:\n  - {model_name: v, model_params: {api_type: vertex, model: gemini-2.5-pro, vertex_project: p, vertex_location: asia-northeast1, api_key: t}}\n",
    );
    assert_eq!(
        b.api_base,
        "https://asia-northeast1-aiplatform.googleapis.com"
    );
}

#[tokio::test]
async fn embeddings_go_to_predict() {
    let v = Mock::start(Reply::Json(
        200,
        json!({"predictions": [
            {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3, "truncated": false}}},
            {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 2, "truncated": false}}}],
            "metadata": {"billableCharacterCount": 10}}),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - {{model_name: emb, model_params: {{api_type: vertex, model: gemini-embedding-001, vertex_project: p1, api_key: given-token, api_base: '{}'}}}}\n{LOGS_OFF}",
        origin(&v)
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["a", "bc"], "dimensions": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["data"][1]["embedding"], json!([0.3, 0.4]));
    assert_eq!(e["usage"]["prompt_tokens"], 5);
    let hit = &v.hits()[0];
    assert_eq!(
        hit.path,
        "/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-embedding-001:predict"
    );
    assert_eq!(hit.headers["authorization"], "Bearer given-token");
    assert_eq!(
        hit.json(),
        json!({"instances": [{"content": "a"}, {"content": "bc"}], "parameters": {"outputDimensionality": 2}})
    );
}
