//! Config loading: both dialects, env substitution and `.env`, errors that
//! name the key path, and the `check` command.

use std::process::Command;

use serde_json::json;

use yallmp::config::{ApiType, Config, Env};

use crate::support::*;

fn env(vars: &[(&str, &str)]) -> Env {
    Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn errors_of(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml, None, &env(&[])) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.errors,
    }
}

#[test]
fn yallmp_dialect() {
    let yaml = r#"
model_list:
  - model_name: glm
    model_params:
      api_base: https://api.z.ai/api/paas/v4/
      api_key: ${ZAI_KEY}
      target_model: glm-4.6
      request_timeout: 12.5
      supports_reasoning: true
    fallbacks: small
  - model_name: small
    model_params: {api_base: 'http://127.0.0.1:8080/v1', model: org/Small-Model}
proxy_settings:
  server: {host: 0.0.0.0, port: 8081, max_body_bytes: 1000, shutdown_grace_period: 2}
  enable_responses_endpoint: true
router_settings:
  num_retries: 2
"#;
    let c = Config::from_yaml(yaml, None, &env(&[("ZAI_KEY", "zk-1")])).unwrap();
    assert_eq!(
        (
            c.server.host.as_str(),
            c.server.port,
            c.server.max_body_bytes
        ),
        ("0.0.0.0", 8081, 1000)
    );
    assert!(c.enable_responses_endpoint);
    assert_eq!(c.router.num_retries, 2);
    let glm = &c.model("glm").unwrap().backends[0];
    assert_eq!(glm.api_base, "https://api.z.ai/api/paas/v4");
    assert_eq!(glm.api_key.as_ref().unwrap().expose(), "zk-1");
    assert_eq!(glm.upstream_model.as_deref(), Some("glm-4.6"));
    assert_eq!(glm.request_timeout.as_millis(), 12500);
    assert!(glm.supports_reasoning);
    assert_eq!(c.model("glm").unwrap().fallbacks, ["small"]);
    // In the yallmp dialect `model` is the upstream name as written.
    assert_eq!(
        c.model("small").unwrap().backends[0]
            .upstream_model
            .as_deref(),
        Some("org/Small-Model")
    );
    // Keys never show in Debug output.
    assert!(!format!("{c:?}").contains("zk-1"));
}

#[test]
fn litellm_dialect() {
    let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      timeout: 20
      rpm: 100
    model_info: {id: abc}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'http://10.0.0.2:8000/v1'}
  - model_name: local
    litellm_params: {model: hosted_vllm/Qwen/Qwen3-8B, api_base: 'http://127.0.0.1:8000/v1'}
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: x}
router_settings:
  num_retries: 1
  routing_strategy: simple-shuffle
  fallbacks: [{"gpt-4o": ["local"]}, {"local": "claude"}]
general_settings:
  master_key: sk-1234
  enable_responses_endpoint: true
  port: 4000
litellm_settings:
  drop_params: true
"#;
    let c = Config::from_yaml(yaml, None, &env(&[("OPENAI_API_KEY", "sk-o")])).unwrap();
    let gpt = c.model("gpt-4o").unwrap();
    assert_eq!(gpt.backends.len(), 2);
    assert_eq!(gpt.backends[0].api_base, "https://api.openai.com/v1");
    assert_eq!(gpt.backends[0].upstream_model.as_deref(), Some("gpt-4o"));
    assert_eq!(gpt.backends[0].request_timeout.as_secs(), 20);
    assert_eq!(gpt.backends[1].api_base, "http://10.0.0.2:8000/v1");
    assert_eq!(gpt.backends[1].name, "gpt-4o#2");
    assert_eq!(gpt.backends[1].limits.rpm, None);
    assert_eq!(gpt.fallbacks, ["local"]);
    assert_eq!(
        c.model("local").unwrap().backends[0]
            .upstream_model
            .as_deref(),
        Some("Qwen/Qwen3-8B")
    );
    assert_eq!(c.model("local").unwrap().fallbacks, ["claude"]);
    assert_eq!(
        c.model("claude").unwrap().backends[0].api_type,
        ApiType::Anthropic
    );
    assert!(c.enable_responses_endpoint);
    assert_eq!(c.server.port, 4000);
    // LiteLLM's master_key is a client key.
    assert_eq!(c.auth.api_keys.len(), 1);
    assert_eq!(c.auth.api_keys[0].expose(), "sk-1234");
    // rpm, model_info.id and drop_params are honoured: the only warning
    // is the listen address's.
    assert_eq!(gpt.backends[0].name, "abc");
    assert_eq!(gpt.backends[0].limits.rpm, Some(100));
    let warnings = c.warnings.join("\n");
    assert!(!warnings.contains("not implemented"), "{warnings}");
}

#[test]
fn fallbacks_as_plain_map_and_per_model_list() {
    let yaml = r#"
model_list:
  - {model_name: a, model_params: {api_type: stub, fallbacks: [c]}}
  - {model_name: b, model_params: {api_type: stub}}
  - {model_name: c, model_params: {api_type: stub}}
router_settings:
  fallbacks: {a: [b, c]}
"#;
    let c = Config::from_yaml(yaml, None, &env(&[])).unwrap();
    assert_eq!(c.model("a").unwrap().fallbacks, ["b", "c"]);
}

#[test]
fn unknown_keys_name_the_path_and_suggest() {
    let errors = errors_of(
        r#"
model_list:
  - model_name: a
    model_params: {api_bse: 'http://x', api_type: stub}
  - model_name: b
    model_parms: {api_type: stub}
proxy_settings:
  servr: {}
"#,
    );
    let all = errors.join("\n");
    assert!(
        all.contains(
            "model_list[0].model_params.api_bse: unknown key `api_bse`; did you mean `api_base`?"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "model_list[1].model_parms: unknown key `model_parms`; did you mean `model_params`?"
        ),
        "{all}"
    );
    assert!(
        all.contains("proxy_settings.servr: unknown key `servr`; did you mean `server`?"),
        "{all}"
    );
}

#[test]
fn value_errors_name_the_path() {
    let all = errors_of(
        r#"
model_list:
  - {model_name: a, model_params: {api_base: 'ftp://x'}}
  - {model_name: b, model_params: {api_type: openia}}
  - {model_name: c, model_params: {api_type: stub, request_timeout: -1}}
  - {model_name: d}
router_settings:
  fallbacks: [{a: [nope]}]
"#,
    )
    .join("\n");
    for want in [
        "model_list[0].model_params.api_base: `ftp://x` is not an http:// or https:// URL",
        "model_list[1].model_params.api_type: unknown api_type `openia`",
        "did you mean `openai`?",
        "model_list[1].model_params.api_base: required for api_type openai",
        "model_list[2].model_params.request_timeout: must be a positive number",
        "model_list[3]: needs model_params (or litellm_params)",
        "router_settings.fallbacks[0].a[0]: unknown model `nope`",
    ] {
        assert!(all.contains(want), "missing `{want}` in:\n{all}");
    }
    let all = errors_of("proxy_settings: {server: {port: high}}\n").join("\n");
    assert!(
        all.contains("proxy_settings.server.port: invalid type"),
        "{all}"
    );
    let all = errors_of("model_list: [\n").join("\n");
    assert!(all.contains("not valid YAML"), "{all}");
}

#[test]
fn missing_env_var_names_the_variable_and_path_unless_defaulted() {
    let yaml = "model_list:\n  - {model_name: a, model_params: {api_base: 'http://x', api_key: '${NOPE_KEY}'}}\n";
    let all = errors_of(yaml).join("\n");
    assert!(
        all.contains(
            "model_list[0].model_params.api_key: environment variable NOPE_KEY is not set"
        ),
        "{all}"
    );
    let yaml = "model_list:\n  - {model_name: a, model_params: {api_base: '${BASE:-http://127.0.0.1:1/v1}', api_key: '${NOPE_KEY:-}'}}\n  - {model_name: b, model_params: {api_type: stub, api_key: '${NUM_KEY}', supports_reasoning: '${ON}'}}\nproxy_settings: {server: {port: '${PORT}'}}\n";
    let c = Config::from_yaml(
        yaml,
        None,
        &env(&[("PORT", "9001"), ("NUM_KEY", "12345"), ("ON", "true")]),
    )
    .unwrap();
    assert_eq!(c.server.port, 9001);
    // A whole reference takes the type the key wants: a numeric key stays a string.
    assert_eq!(
        c.models[1].backends[0].api_key.as_ref().unwrap().expose(),
        "12345"
    );
    assert!(c.models[1].backends[0].supports_reasoning);
    assert_eq!(c.models[0].backends[0].api_base, "http://127.0.0.1:1/v1");
    assert!(c.models[0].backends[0].api_key.is_none());
}

#[tokio::test]
async fn dotenv_beside_the_config_is_loaded_and_used() {
    let mock = Mock::start(Reply::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "model_list:\n  - model_name: m\n    model_params:\n      api_base: ${YALLMP_TEST_BASE}\n      api_key: $YALLMP_TEST_KEY\nproxy_settings: {server: {port: 0}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "YALLMP_TEST_BASE={}\nYALLMP_TEST_KEY=sk-from-dotenv\n",
            mock.url
        ),
    )
    .unwrap();
    let mut config = Config::load(&dir.path().join("config.yaml")).unwrap();
    isolate_logs(&mut config);
    let server = yallmp::serve(config).await.unwrap();
    let (status, _, _) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        mock.hits()[0].headers["authorization"],
        "Bearer sk-from-dotenv"
    );
    server.shutdown().await;
}

#[test]
fn check_command_prints_the_table_with_keys_redacted_or_fails_with_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "model_list:\n  - {model_name: m, model_params: {api_base: 'http://127.0.0.1:1/v1', api_key: sk-secret-123, target_model: up}}\n  - {model_name: n, model_params: {api_type: stub}}\nrouter_settings: {fallbacks: {m: n}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("m#1") && stdout.contains("model=up") && stdout.contains("key=***"),
        "{stdout}"
    );
    assert!(stdout.contains("fallbacks: n"), "{stdout}");
    assert!(!stdout.contains("sk-secret-123"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "model_list:\n  - {model_name: m, model_params: {api_typ: stub}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml: model_list[0].model_params.api_typ: unknown key"),
        "{stderr}"
    );

    // The config path can come from YALLMP_CONFIG.
    let out = Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .arg("check")
        .env("YALLMP_CONFIG", &good)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn shipped_config_loads_with_stub_backends_only() {
    let c =
        Config::load(std::path::Path::new("configs/config.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.models.is_empty());
    assert!(
        c.models
            .iter()
            .all(|m| m.backends.iter().all(|b| b.api_type == ApiType::Stub))
    );
}

#[test]
fn server_workers() {
    use yallmp::config::Workers;
    let model =
        "model_list:\n  - model_name: m\n    model_params: {api_base: 'http://127.0.0.1:9/v1'}\n";
    let with = |w: &str| format!("{model}proxy_settings:\n  server: {{workers: {w}}}\n");
    let workers = |yaml: &str| {
        Config::from_yaml(yaml, None, &env(&[]))
            .unwrap()
            .server
            .workers
    };
    // One serving thread a core unless told otherwise.
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(workers(model), Workers::PerThread(cores));
    assert_eq!(workers(&with("auto")), Workers::PerThread(cores));
    assert_eq!(workers(&with("3")), Workers::PerThread(3));
    assert_eq!(workers(&with("Shared")), Workers::Shared);
    for (bad, says) in [
        ("0", "0 is out of range"),
        ("-2", "-2 is out of range"),
        ("100000", "100000 is out of range"),
        (
            "many",
            "expected `auto`, `shared` or a thread count, got `many`",
        ),
    ] {
        let errors = errors_of(&with(bad));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("proxy_settings.server.workers: ") && e.contains(says)),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn log_queue_bounds() {
    let model =
        "model_list:\n  - model_name: m\n    model_params: {api_base: 'http://127.0.0.1:9/v1'}\n";
    let c = Config::from_yaml(model, None, &env(&[])).unwrap();
    assert_eq!(
        (c.logging.queue_size, c.logging.queue_max_bytes),
        (10_000, 64 << 20)
    );
    let yaml =
        format!("{model}proxy_settings:\n  logging: {{queue_size: 5, queue_max_bytes: 4096}}\n");
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert_eq!((c.logging.queue_size, c.logging.queue_max_bytes), (5, 4096));
    let errors = errors_of(&format!(
        "{model}proxy_settings:\n  logging: {{queue_max_bytes: 0}}\n"
    ));
    assert!(
        errors
            .iter()
            .any(|e| e == "proxy_settings.logging.queue_max_bytes: must be at least 1"),
        "{errors:?}"
    );
}

#[test]
fn log_on_full_and_layout() {
    use yallmp::config::{FileLayout, OnFull};
    let model =
        "model_list:\n  - model_name: m\n    model_params: {api_base: 'http://127.0.0.1:9/v1'}\n";
    let c = Config::from_yaml(model, None, &env(&[])).unwrap();
    assert_eq!(c.logging.on_full, OnFull::Wait);
    assert_eq!(c.logging.layout, FileLayout::PerRequest);
    assert_eq!(c.logging.segment_max_bytes, 64 << 20);
    let yaml = format!(
        "{model}proxy_settings:\n  logging: {{on_full: drop, files: {{layout: segments, segment_max_bytes: 1000}}}}\n"
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert_eq!(c.logging.on_full, OnFull::Drop);
    assert_eq!(c.logging.layout, FileLayout::Segments);
    assert_eq!(c.logging.segment_max_bytes, 1000);
    let errors = errors_of(&format!(
        "{model}proxy_settings:\n  logging: {{on_full: block, files: {{layout: daily, segment_max_bytes: 0, segment_size: 5}}}}\n"
    ));
    for want in [
        "proxy_settings.logging.on_full: `block` is not one of `drop`, `wait`",
        "proxy_settings.logging.files.layout: `daily` is not one of `per_request`, `segments`",
        "proxy_settings.logging.files.segment_max_bytes: must be at least 1",
    ] {
        assert!(errors.iter().any(|e| e == want), "{want}: {errors:?}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("proxy_settings.logging.files.segment_size")),
        "{errors:?}"
    );
}

/// `database.retention` out of the calendar's range: `1e300` days used to
/// panic `yallmp check` (a Duration overflow) and `1e8` passed, then killed
/// the pruning task on a date overflow. Both are refused with the key path,
/// by the loader and by `check`, and so is `max_rows: 0`.
#[test]
fn retention_out_of_range_is_refused_by_check() {
    for (setting, needle) in [
        ("max_age_days: 1e300", "database.retention.max_age_days"),
        ("max_age_days: 1e8", "database.retention.max_age_days"),
        ("max_age_days: 36501", "database.retention.max_age_days"),
        ("max_rows: 0", "database.retention.max_rows"),
        (
            "max_rows: 18446744073709551615",
            "database.retention.max_rows",
        ),
    ] {
        let yaml = format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_type: stub}}}}\ndatabase:\n  retention: {{{setting}}}\n"
        );
        let errors = errors_of(&yaml);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{setting}: {errors:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_yallmp"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{setting}: {stderr}");
        assert!(stderr.contains(needle), "{setting}: {stderr}");
        assert!(!stderr.contains("panicked"), "{setting}: {stderr}");
    }
    // The largest accepted values load.
    let c = Config::from_yaml(
        "model_list:\n  - {model_name: m, model_params: {api_type: stub}}\ndatabase:\n  retention: {max_age_days: 36500, max_rows: 1}\n",
        None,
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        c.database.max_age,
        Some(std::time::Duration::from_secs(36_500 * 86_400))
    );
    assert_eq!(c.database.max_rows, Some(1));
}

#[test]
fn an_admin_password_from_an_empty_variable_max_body_bytes_0_and_bad_allowed_hosts_fail_check() {
    let run = |yaml: &str, vars: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yallmp"));
        cmd.args(["check", "--config"])
            .arg(&path)
            .env_remove("YALLMP_ADMIN_PASSWORD");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let stub = "model_list:\n  - {model_name: m, model_params: {api_type: stub}}\n";
    // Asked for, set to nothing: refused.
    let yaml = format!(
        "{stub}proxy_settings: {{auth: {{admin_password: '${{YALLMP_TEST_ADMIN_PW}}'}}}}\n"
    );
    let (code, out) = run(&yaml, &[("YALLMP_TEST_ADMIN_PW", "")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("proxy_settings.auth.admin_password: empty")
            && out.contains("YALLMP_TEST_ADMIN_PW"),
        "{out}"
    );
    // Unset: refused too (a missing variable).
    let (code, out) = run(&yaml, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("YALLMP_TEST_ADMIN_PW"), "{out}");
    // Set: fine; an explicit empty default means "no password", as shipped.
    let (code, out) = run(&yaml, &[("YALLMP_TEST_ADMIN_PW", "pw-1234")]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(
        &format!(
            "{stub}proxy_settings: {{auth: {{admin_password: '${{YALLMP_TEST_ADMIN_PW:-}}'}}}}\n"
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    // The environment's password wins over an empty variable in the file.
    let (code, out) = run(
        &yaml,
        &[
            ("YALLMP_TEST_ADMIN_PW", ""),
            ("YALLMP_ADMIN_PASSWORD", "pw-env"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = run(
        &format!("{stub}proxy_settings: {{server: {{max_body_bytes: 0}}}}\n"),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("proxy_settings.server.max_body_bytes: must be at least 1"),
        "{out}"
    );
    let (code, out) = run(
        &format!(
            "{stub}proxy_settings: {{server: {{allowed_hosts: ['https://admin.example.com/']}}}}\n"
        ),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("proxy_settings.server.allowed_hosts[0]"),
        "{out}"
    );
    let c = Config::from_yaml(
        &format!("{stub}proxy_settings: {{server: {{allowed_hosts: [Admin.Example.com, 'x.example:8443', '*']}}}}\n"),
        None,
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        c.server.allowed_hosts,
        ["admin.example.com", "x.example:8443", "*"]
    );

    // Control characters in what becomes a URL, a header or a name.
    for (yaml, path) in [
        (
            "model_list:\n  - {model_name: m, model_params: {api_base: \"http://h/v1\\r\\nX: y\"}}\n",
            "model_list[0].model_params.api_base",
        ),
        (
            "model_list:\n  - {model_name: m, model_params: {api_type: stub, api_key: \"sk-1\\n2\"}}\n",
            "model_list[0].model_params.api_key",
        ),
        (
            "model_list:\n  - {model_name: \"m\\u0007\", model_params: {api_type: stub}}\n",
            "model_list[0].model_name",
        ),
    ] {
        let (code, out) = run(yaml, &[]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(&format!("{path}: must not contain control characters")),
            "{out}"
        );
    }

    // The banner shows no password of an api_base's userinfo.
    let (code, out) = run(
        "model_list:\n  - {model_name: m, model_params: {api_base: 'http://u:urlpw-SECRET-1@127.0.0.1:1/v1'}}\n",
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("urlpw-SECRET-1"), "{out}");
    assert!(out.contains("http://u:***@127.0.0.1:1/v1"), "{out}");
}
