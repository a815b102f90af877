//! One backend from a model entry's `model_params` (or LiteLLM's
//! `litellm_params`): provider prefixes, `api_type`, `api_base`, Azure
//! deployments, balancing and health checks.

use std::sync::Arc;

use super::check::seconds;
use super::errors::{Errors, KeyPath};
use super::raw::{
    DEFAULT_AZURE_API_VERSION, DEFAULT_HEALTH_CHECK_INTERVAL, RawHealthCheck, RawModelParams,
};
use super::{
    ApiType, AzureTarget, Backend, BackendRouting, DEFAULT_REQUEST_TIMEOUT, HealthCheck, Parameter,
    Secret, nearest,
};

/// LiteLLM provider prefixes (`openai/gpt-4o`): the protocol and, where the
/// provider has a public endpoint, the default `api_base`.
const PROVIDERS: &[(&str, ApiType, Option<&str>)] = &[
    ("openai", ApiType::Openai, Some("https://api.openai.com/v1")),
    ("custom_openai", ApiType::Openai, None),
    (
        "text-completion-openai",
        ApiType::Openai,
        Some("https://api.openai.com/v1"),
    ),
    ("hosted_vllm", ApiType::Openai, None),
    ("vllm", ApiType::Openai, None),
    ("llamacpp", ApiType::Openai, None),
    ("lm_studio", ApiType::Openai, None),
    ("ollama", ApiType::Openai, None),
    ("ollama_chat", ApiType::Openai, None),
    (
        "deepseek",
        ApiType::Openai,
        Some("https://api.deepseek.com/v1"),
    ),
    (
        "moonshot",
        ApiType::Openai,
        Some("https://api.moonshot.ai/v1"),
    ),
    (
        "openrouter",
        ApiType::Openai,
        Some("https://openrouter.ai/api/v1"),
    ),
    (
        "groq",
        ApiType::Openai,
        Some("https://api.groq.com/openai/v1"),
    ),
    (
        "mistral",
        ApiType::Openai,
        Some("https://api.mistral.ai/v1"),
    ),
    ("xai", ApiType::Openai, Some("https://api.x.ai/v1")),
    (
        "together_ai",
        ApiType::Openai,
        Some("https://api.together.xyz/v1"),
    ),
    (
        "fireworks_ai",
        ApiType::Openai,
        Some("https://api.fireworks.ai/inference/v1"),
    ),
    ("zai", ApiType::Openai, Some("https://api.z.ai/api/paas/v4")),
    (
        "minimax",
        ApiType::Openai,
        Some("https://api.minimax.io/v1"),
    ),
    (
        "anthropic",
        ApiType::Anthropic,
        Some("https://api.anthropic.com"),
    ),
    ("azure", ApiType::Azure, None),
    // The default api_base follows the region (config/bedrock.rs).
    ("bedrock", ApiType::Bedrock, None),
    (
        "gemini",
        ApiType::Gemini,
        Some(super::google::GEMINI_API_BASE),
    ),
    ("vertex_ai", ApiType::Vertex, None),
];

const API_TYPES: &[&str] = &[
    "openai",
    "anthropic",
    "stub",
    "azure",
    "bedrock",
    "gemini",
    "vertex",
];

#[allow(clippy::too_many_arguments)]
pub(super) fn backend(
    model_name: &str,
    n: usize,
    p: RawModelParams,
    at: &KeyPath,
    litellm: bool,
    parameters: Arc<[Parameter]>,
    env: &super::Env,
    errors: &mut Errors,
) -> Option<Backend> {
    let start = errors.mark();
    let mut p = p;
    let aws = super::bedrock::RawAws {
        access_key_id: p.aws_access_key_id.take(),
        secret_access_key: p.aws_secret_access_key.take(),
        session_token: p.aws_session_token.take(),
        region_name: p.aws_region_name.take(),
        profile_name: p.aws_profile_name.take(),
    };
    // The plain keys with their defaults, read before the fields are taken.
    let weight = p.weight();
    let strip_prefix = p.strip_prefix();
    let supports_reasoning = p.supports_reasoning();
    let supports_responses = p.supports_responses();
    let responses_websocket = p.responses_websocket();
    let pricing = match (crate::price::RawPricing {
        pricing: p.pricing,
        input_cost_per_token: p.input_cost_per_token,
        output_cost_per_token: p.output_cost_per_token,
        cache_read_input_token_cost: p.cache_read_input_token_cost,
        cache_creation_input_token_cost: p.cache_creation_input_token_cost,
        output_cost_per_reasoning_token: p.output_cost_per_reasoning_token,
    })
    .resolve()
    {
        Ok(price) => price,
        Err(e) => {
            errors.at(at.key("pricing"), e);
            None
        }
    };
    let api_version = p.api_version().to_string();
    // LiteLLM names the provider in front of the model: `openai/gpt-4o`;
    // or in `custom_llm_provider`, which wins, and then the model is sent
    // as written unless its prefix names that same provider (LiteLLM's
    // rule: `custom_llm_provider: hosted_vllm` with `model: openai/x`
    // sends `openai/x`).
    let mut provider: Option<&(&str, ApiType, Option<&str>)> = None;
    let mut model = p.model.filter(|m| !m.trim().is_empty());
    let custom = match p.custom_llm_provider.as_deref().map(str::trim) {
        Some(name) => match PROVIDERS.iter().find(|(n, _, _)| *n == name) {
            Some(found) => Some(found),
            None => {
                let names: Vec<&str> = PROVIDERS.iter().map(|p| p.0).collect();
                let hint = nearest(name, &names)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                errors.at(
                    at.key("custom_llm_provider"),
                    format!("unknown provider `{name}`{hint}"),
                );
                None
            }
        },
        None => None,
    };
    if litellm
        && let Some(m) = &model
        && let Some((prefix, rest)) = m.split_once('/')
        && let Some(found) = PROVIDERS.iter().find(|(name, _, _)| *name == prefix)
        && custom.is_none_or(|c| c.0 == prefix)
    {
        provider = Some(found);
        model = Some(rest.to_string());
    }
    if custom.is_some() {
        provider = custom;
    }
    // LiteLLM's provider wildcard (`model_name: anthropic/*` with `model:
    // anthropic/*`): the part the `*` matched goes upstream as the model.
    let mut strip_prefix = strip_prefix;
    if litellm && model.as_deref() == Some("*") && crate::wildcard::is_pattern(model_name) {
        model = None;
        strip_prefix = true;
    }
    let api_type = match p.api_type.as_deref() {
        None => provider.map_or(ApiType::Openai, |p| p.1),
        Some("openai") => ApiType::Openai,
        Some("anthropic") => ApiType::Anthropic,
        Some("stub") => ApiType::Stub,
        Some("azure") => ApiType::Azure,
        Some("bedrock") => ApiType::Bedrock,
        Some("gemini") => ApiType::Gemini,
        Some("vertex") | Some("vertex_ai") => ApiType::Vertex,
        Some(other) => {
            let hint = nearest(other, API_TYPES)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.at(
                at.key("api_type"),
                format!(
                    "unknown api_type `{other}` (one of: {}){hint}",
                    API_TYPES.join(", ")
                ),
            );
            ApiType::Openai
        }
    };
    let bedrock = (api_type == ApiType::Bedrock)
        .then(|| {
            super::bedrock::resolve(
                aws,
                p.api_key.as_deref(),
                p.api_base.as_deref(),
                env,
                at,
                errors,
            )
        })
        .flatten();
    let vertex = (api_type == ApiType::Vertex).then(|| {
        super::google::vertex(
            p.vertex_project.as_deref(),
            p.vertex_location.as_deref(),
            p.vertex_credentials.as_deref(),
            p.api_key.as_deref().is_some_and(|k| !k.is_empty()),
            at,
            errors,
        )
    });
    let api_base = match p
        .api_base
        .map(|s| s.trim().trim_end_matches('/').to_string())
    {
        Some(b) if !b.is_empty() => {
            if !(b.starts_with("http://") || b.starts_with("https://")) {
                errors.at(
                    at.key("api_base"),
                    format!("`{b}` is not an http:// or https:// URL"),
                );
            }
            b
        }
        _ => match (api_type, provider.and_then(|p| p.2)) {
            (ApiType::Stub, _) => "stub://local".to_string(),
            (ApiType::Bedrock, _) => bedrock
                .as_ref()
                .map_or_else(String::new, |b| super::bedrock::default_api_base(&b.region)),
            (ApiType::Gemini, _) => super::google::GEMINI_API_BASE.to_string(),
            (ApiType::Vertex, _) => super::google::vertex_base(
                vertex
                    .as_ref()
                    .and_then(|v| v.as_ref())
                    .map_or(super::google::DEFAULT_VERTEX_LOCATION, |v| {
                        v.location.as_str()
                    }),
            ),
            (_, Some(default)) => default.to_string(),
            _ => {
                errors.at(
                    at.key("api_base"),
                    format!("required for api_type {}", api_type.as_str()),
                );
                String::new()
            }
        },
    };
    let request_timeout = seconds(
        p.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        &at.key("request_timeout"),
        errors,
    );
    let routing = routing(weight, p.order, p.health_check, at, errors);
    let reasoning = p
        .reasoning
        .and_then(|r| super::reasoning::Reasoning::resolve(r, &at.key("reasoning"), errors));
    let azure = (api_type == ApiType::Azure).then(|| {
        let deployment = p.deployment.as_deref().or(model.as_deref());
        azure(deployment, &api_version, at, errors)
    });
    // A control character (CR, LF, NUL) in what becomes a URL or a header
    // would be dropped or split it on the wire: refused here, for the file
    // and the admin API alike.
    for (key, v) in [
        ("api_base", Some(&api_base)),
        ("api_key", p.api_key.as_ref()),
        ("target_model", p.target_model.as_ref()),
        ("model", model.as_ref()),
    ] {
        if v.is_some_and(|v| v.chars().any(char::is_control)) {
            errors.at(
                at.key(key),
                "must not contain control characters (CR, LF, tab, NUL, ...)",
            );
        }
    }
    if api_type == ApiType::Gemini && p.api_key.as_deref().is_none_or(str::is_empty) {
        errors.at(at.key("api_key"), "required for api_type gemini");
    }
    if matches!(api_type, ApiType::Gemini | ApiType::Vertex)
        && let Some(m) = p.target_model.as_ref().or(model.as_ref())
        && !super::google::url_safe(m.strip_prefix("models/").unwrap_or(m))
    {
        errors.at(
            at.key("model"),
            format!("`{m}` is not a Gemini model id (it goes into the URL)"),
        );
    }
    if strip_prefix && !crate::wildcard::is_pattern(model_name) {
        errors.at(
            at.key("strip_prefix"),
            format!("only for a wildcard model_name (with a `*`); `{model_name}` has none"),
        );
    }
    let stream_timeout = p
        .stream_timeout
        .map(|s| seconds(Some(s), request_timeout, &at.key("stream_timeout"), errors));
    let organization = p.organization.filter(|o| !o.trim().is_empty());
    if let Some(o) = &organization
        && http::HeaderValue::from_str(o).is_err()
    {
        errors.at(
            at.key("organization"),
            "not a valid header value (control or non-ASCII characters)",
        );
    }
    let id = p.id.map(|i| i.trim().to_string()).filter(|i| !i.is_empty());
    if let Some(i) = &id
        && (i.chars().any(char::is_control) || http::HeaderValue::from_str(i).is_err())
    {
        errors.at(
            at.key("id"),
            "not a valid header value (control or non-ASCII characters)",
        );
    }
    let limits = super::BackendLimits {
        rpm: positive(p.rpm, &at.key("rpm"), errors),
        tpm: positive(p.tpm, &at.key("tpm"), errors),
        max_parallel: positive(
            p.max_parallel_requests,
            &at.key("max_parallel_requests"),
            errors,
        ),
        max_input_tokens: positive(p.max_input_tokens, &at.key("max_input_tokens"), errors),
        from: p
            .limits_from
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(Arc::from),
    };
    let drop = super::DropParams {
        refuse: p.drop_params == Some(false),
        always: p
            .additional_drop_params
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !f.trim().is_empty())
            .collect(),
    };
    if errors.since(start) {
        return None;
    }
    let mut backend = Backend {
        name: id.unwrap_or_else(|| format!("{model_name}#{n}")),
        model_name: model_name.to_string(),
        api_type,
        api_base,
        api_key: p.api_key.filter(|k| !k.is_empty()).map(Secret::new),
        upstream_model: p.target_model.filter(|m| !m.trim().is_empty()).or(model),
        request_timeout,
        supports_reasoning,
        reasoning,
        supports_responses,
        responses_websocket,
        pricing,
        parameters,
        urls: None,
        routing,
        thinking: None,
        azure: azure.flatten(),
        bedrock: bedrock.map(Arc::new),
        vertex: vertex.flatten().map(Arc::new),
        strip_prefix,
        organization,
        stream_timeout,
        max_retries: p.max_retries,
        limits,
        drop,
    };
    backend.parse_urls();
    Some(backend)
}

/// A limit: `None` or a number above 0 (0 is refused: it would take
/// nothing).
fn positive(v: Option<u64>, at: &KeyPath, errors: &mut Errors) -> Option<u64> {
    if v == Some(0) {
        errors.at(at, "must be at least 1 (leave it out for no limit)");
    }
    v.filter(|n| *n > 0)
}

/// An Azure backend's deployment (`deployment`, else the model) and
/// `api_version`; both go into the URL, so they are checked for characters
/// that would need escaping.
fn azure(
    deployment: Option<&str>,
    api_version: &str,
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<AzureTarget> {
    let url_safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let deployment = deployment.map(str::trim).filter(|d| !d.is_empty());
    let Some(deployment) = deployment else {
        errors.at(
            at.key("deployment"),
            "required for api_type azure (or `model: azure/<deployment>`)",
        );
        return None;
    };
    if !url_safe(deployment) {
        errors.at(
            at.key("deployment"),
            format!("`{deployment}` may hold only letters, digits, `-`, `_` and `.`"),
        );
        return None;
    }
    if !url_safe(api_version) {
        errors.at(
            at.key("api_version"),
            format!("`{api_version}` is not an api-version such as {DEFAULT_AZURE_API_VERSION}"),
        );
        return None;
    }
    Some(AzureTarget {
        deployment: deployment.to_string(),
        api_version: api_version.to_string(),
    })
}

/// A backend's `weight`, `order` and `health_check`.
fn routing(
    weight: f64,
    order: Option<i64>,
    check: Option<RawHealthCheck>,
    at: &KeyPath,
    errors: &mut Errors,
) -> BackendRouting {
    if !(weight.is_finite() && weight > 0.0) {
        errors.at(
            at.key("weight"),
            format!("must be a number > 0, got {weight}"),
        );
    }
    let health_check = check.map(|c| {
        let interval = seconds(
            c.interval,
            DEFAULT_HEALTH_CHECK_INTERVAL,
            &at.key("health_check.interval"),
            errors,
        );
        let timeout = seconds(
            c.timeout,
            RawHealthCheck::default_timeout(interval),
            &at.key("health_check.timeout"),
            errors,
        );
        let path = c.path();
        if !path.starts_with('/') {
            errors.at(
                at.key("health_check.path"),
                format!("`{path}` must start with `/` (it is appended to api_base)"),
            );
        }
        HealthCheck {
            interval,
            path,
            timeout,
        }
    });
    BackendRouting {
        weight,
        order,
        health_check,
    }
}
