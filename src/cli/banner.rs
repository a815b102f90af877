//! What `serve` prints at start-up and `check` prints: the config's models
//! with their backends, fallbacks and parsers, routing, request log, auth
//! and endpoints. Keys are never shown.

use std::fmt::Write as _;

use crate::config::Config;

/// The start-up banner (after the listen line).
pub fn banner(config: &Config, path: &std::path::Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config: {}", path.display());
    out.push_str(&model_table(config));
    let log = &config.logging;
    let files = log
        .files_dir
        .as_ref()
        .map_or_else(|| "off".to_string(), |d| d.display().to_string());
    let database = if log.database {
        config.database.target.describe()
    } else {
        "off".to_string()
    };
    let _ = writeln!(out, "request log: files {files}; database {database}");
    let clients = match config.auth.api_keys.len() {
        0 => "open (no client keys)".to_string(),
        n => format!("{n} client key(s) required"),
    };
    let admin = if config.auth.admin_password.is_some() {
        "/admin needs the admin password"
    } else {
        "/admin answers loopback clients only (no YALLMP_ADMIN_PASSWORD)"
    };
    let _ = writeln!(out, "auth: /v1 {clients}; {admin}");
    // From the route table the router is built from, so it names what is served.
    use crate::api::routes::Group;
    let show = |r: &crate::api::routes::Route, prefix: &str| {
        format!("{} {prefix}{}", r.method, r.path.replace("{*", "{"))
    };
    let client: Vec<String> = [Group::OpenAi, Group::Anthropic]
        .into_iter()
        .flat_map(Group::routes)
        .map(|r| {
            if r.path == "/responses" && !config.enable_responses_endpoint {
                "(/v1/responses off: proxy_settings.enable_responses_endpoint)".to_string()
            } else {
                show(&r, "/v1")
            }
        })
        .collect();
    let root: Vec<String> = Group::Root
        .routes()
        .iter()
        .filter(|r| !r.path.starts_with("/admin"))
        .map(|r| show(r, ""))
        .collect();
    let _ = writeln!(
        out,
        "endpoints: {} (each also without /v1); {}; /admin/*",
        client.join(", "),
        root.join(", ")
    );
    out
}

/// `parse_tags(auto) → swap_reasoning_content(reasoning_to_content)` on `/chat/completions`.
fn describe_parsers(p: &crate::config::parsers::ParsersSettings) -> String {
    use crate::config::parsers::ResponseModule;
    let modules: Vec<String> = p
        .response
        .iter()
        .map(|m| match m {
            ResponseModule::ParseTags => {
                let t = &p.parse_tags;
                let mut d = format!("parse_tags({}", serde_name(&t.tool_format));
                if t.starts_in_reasoning {
                    d.push_str(", starts_in_reasoning");
                }
                d.push(')');
                d
            }
            ResponseModule::SwapReasoningContent => {
                format!(
                    "swap_reasoning_content({})",
                    serde_name(&p.swap_reasoning_content.mode)
                )
            }
            ResponseModule::NormalizeReasoning => format!(
                "normalize_reasoning({})",
                p.normalize_reasoning.fields.join(", ")
            ),
        })
        .collect();
    format!("{} on {}", modules.join(" → "), p.paths.join(", "))
}

/// The name a value has in the config file.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Each model with its backends and fallbacks; keys shown as `***`.
pub fn model_table(config: &Config) -> String {
    let mut out = String::new();
    if config.models.is_empty() {
        out.push_str("models: none configured\n");
        return out;
    }
    let _ = writeln!(out, "models:");
    for m in &config.models {
        let _ = writeln!(out, "  {}", m.name);
        for b in &m.backends {
            let upstream = b.upstream_model.as_deref().unwrap_or("(as requested)");
            let key = if b.api_key.is_some() { "***" } else { "none" };
            let mut extra = String::new();
            if b.supports_reasoning {
                extra.push_str(", reasoning");
            }
            if let Some(aws) = &b.bedrock {
                // Where the credentials came from, never what they are.
                let _ = write!(extra, ", aws {} ({})", aws.region, aws.source);
            }
            if m.backends.len() > 1 {
                let _ = write!(extra, ", weight={}", b.routing.weight);
                if let Some(o) = b.routing.order {
                    let _ = write!(extra, ", order={o}");
                }
            }
            if let Some(h) = &b.routing.health_check {
                let _ = write!(
                    extra,
                    ", health check {} every {}s",
                    h.path,
                    h.interval.as_secs_f64()
                );
            }
            let _ = writeln!(
                out,
                "    {:<14} {:<9} {} model={upstream} key={key} timeout={}s{extra}",
                b.name,
                b.api_type.as_str(),
                crate::config::mask_url_secret(&b.api_base),
                b.request_timeout.as_secs_f64(),
            );
        }
        if !m.fallbacks.is_empty() {
            let _ = writeln!(out, "    fallbacks: {}", m.fallbacks.join(" → "));
        }
        if !m.context_window_fallbacks.is_empty() {
            let _ = writeln!(
                out,
                "    on a context window error: {}",
                m.context_window_fallbacks.join(" → ")
            );
        }
        if !m.content_policy_fallbacks.is_empty() {
            let _ = writeln!(
                out,
                "    on a content policy refusal: {}",
                m.content_policy_fallbacks.join(" → ")
            );
        }
        let (parsers, whose) = match &m.parsers {
            Some(p) => (p, "own"),
            None => (&config.parsers, "global"),
        };
        if parsers.enabled == Some(true) && !parsers.response.is_empty() {
            let _ = writeln!(out, "    parsers ({whose}): {}", describe_parsers(parsers));
        }
    }
    let _ = writeln!(out, "retries per backend: {}", config.router.num_retries);
    let r = &config.router;
    let _ = writeln!(
        out,
        "routing: {}, cooldown after more than {} failures a minute, for {}s",
        r.strategy.as_str(),
        r.allowed_fails,
        r.cooldown_time.as_secs_f64()
    );
    out
}
