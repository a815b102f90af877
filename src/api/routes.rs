//! Every route the proxy serves, in one table: the router is built from it
//! and the OpenAPI document (`GET /openapi.json`) is written from it, so the
//! two cannot disagree.

use axum::routing::{MethodRouter, delete, get, patch, post};
use http::Method;

use super::{
    Shared, admin, anthropic, cache, docs, files, health, keys, litellm_compat, logs, media,
    metrics, openai, ui,
};

/// One route: where, what it takes and gives (schema names in the
/// document's components), and its handler.
pub struct Route {
    pub method: Method,
    /// The path within its group, in axum's syntax (`/models/{*id}`).
    pub path: &'static str,
    pub summary: &'static str,
    /// The request body's schema, if it takes one.
    pub request: Option<&'static str>,
    /// The 200 answer's schema; `None`: not JSON (text, HTML).
    pub response: Option<&'static str>,
    /// Answers with an event stream when the body asks (`stream: true`).
    pub streams: bool,
    pub handler: MethodRouter<Shared>,
}

/// The groups, by where they are mounted and who may call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// OpenAI-compatible, under `/v1` and at the root; client keys.
    OpenAi,
    /// Anthropic-compatible, under `/v1` and at the root; client keys;
    /// errors in Anthropic's shape.
    Anthropic,
    /// Under `/admin`; the admin password (or loopback, or a UI session).
    Admin,
    /// At the root only; no key.
    Root,
    /// LiteLLM's management endpoints, at the root; the master key or the
    /// admin password (docs/migrating-from-litellm.md).
    LiteLlm,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::OpenAi,
        Group::Anthropic,
        Group::Admin,
        Group::Root,
        Group::LiteLlm,
    ];

    /// The prefixes the group is served under.
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            Group::OpenAi | Group::Anthropic => &["/v1", ""],
            Group::Admin => &["/admin"],
            Group::Root | Group::LiteLlm => &[""],
        }
    }

    /// The tag its operations carry in the document.
    pub fn tag(self) -> &'static str {
        match self {
            Group::OpenAi => "OpenAI-compatible",
            Group::Anthropic => "Anthropic-compatible",
            Group::Admin => "Admin",
            Group::Root => "Health, metrics and docs",
            Group::LiteLlm => "LiteLLM-compatible management",
        }
    }

    pub fn routes(self) -> Vec<Route> {
        match self {
            Group::OpenAi => openai_routes(),
            Group::Anthropic => anthropic_routes(),
            Group::Admin => admin_routes(),
            Group::Root => root_routes(),
            Group::LiteLlm => litellm_routes(),
        }
    }
}

fn route(
    method: Method,
    path: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
    handler: MethodRouter<Shared>,
) -> Route {
    Route {
        method,
        path,
        summary,
        request,
        response,
        streams: false,
        handler,
    }
}

fn streaming(mut r: Route) -> Route {
    r.streams = true;
    r
}

fn openai_routes() -> Vec<Route> {
    vec![
        streaming(route(
            Method::POST,
            "/chat/completions",
            "Chat completion (streams with `stream: true`)",
            Some("ChatCompletionRequest"),
            Some("ChatCompletion"),
            post(openai::chat_completions),
        )),
        route(
            Method::POST,
            "/embeddings",
            "Embeddings",
            Some("EmbeddingRequest"),
            Some("EmbeddingList"),
            post(openai::embeddings),
        ),
        streaming(route(
            Method::POST,
            "/responses",
            "Responses API (when `enable_responses_endpoint` is on)",
            Some("ResponsesRequest"),
            Some("Object"),
            post(openai::responses),
        )),
        route(
            Method::GET,
            "/responses",
            "Responses API WebSocket mode: upgrade, then one `response.create` event per turn",
            None,
            None,
            get(super::responses_ws::upgrade),
        ),
        route(
            Method::GET,
            "/responses/{id}",
            "A Responses object yallmp made (a translated answer, from the request log)",
            None,
            Some("Object"),
            get(super::previous::get),
        ),
        route(
            Method::GET,
            "/models",
            "The models clients can ask for",
            None,
            Some("ModelList"),
            get(openai::list_models),
        ),
        route(
            Method::GET,
            "/models/{*id}",
            "One model",
            None,
            Some("Model"),
            get(openai::get_model),
        ),
        streaming(route(
            Method::POST,
            "/completions",
            "Legacy text completion",
            Some("CompletionRequest"),
            Some("Object"),
            post(openai::completions),
        )),
    ]
    .into_iter()
    .chain(media_routes())
    .collect()
}

/// The pass-through endpoints (by model) and files/batches (to
/// `proxy_settings.files_model`'s backend).
fn media_routes() -> Vec<Route> {
    let json = |path, summary, handler| {
        route(
            Method::POST,
            path,
            summary,
            Some("Object"),
            Some("Object"),
            handler,
        )
    };
    let form = |path, summary, handler| {
        route(
            Method::POST,
            path,
            summary,
            Some("Multipart"),
            Some("Object"),
            handler,
        )
    };
    let files = |method, path, summary, handler| {
        route(method, path, summary, None, Some("Object"), handler)
    };
    vec![
        form(
            "/audio/transcriptions",
            "Speech to text (multipart; the `model` field routes)",
            post(media::transcriptions),
        ),
        form(
            "/audio/translations",
            "Speech to English text (multipart; the `model` field routes)",
            post(media::translations),
        ),
        route(
            Method::POST,
            "/audio/speech",
            "Text to speech: the audio streamed back with its content type",
            Some("Object"),
            None,
            post(media::speech),
        ),
        json(
            "/images/generations",
            "Image generation",
            post(media::image_generations),
        ),
        form(
            "/images/edits",
            "Image edit (multipart; the `model` field routes)",
            post(media::image_edits),
        ),
        json(
            "/moderations",
            "Moderation (`model` optional: `proxy_settings.moderation_model`)",
            post(media::moderations),
        ),
        json(
            "/rerank",
            "Rerank, Cohere/Jina shape `{model, query, documents, top_n}`",
            post(media::rerank),
        ),
        json("/v2/rerank", "Rerank (Cohere v2 path)", post(media::rerank)),
        form(
            "/files",
            "Upload a file (multipart) to `proxy_settings.files_model`'s backend",
            post(files::pass),
        ),
        files(Method::GET, "/files", "List files", get(files::pass)),
        files(Method::GET, "/files/{id}", "One file", get(files::pass)),
        files(
            Method::DELETE,
            "/files/{id}",
            "Delete a file",
            delete(files::pass),
        ),
        route(
            Method::GET,
            "/files/{id}/content",
            "A file's content (bytes as stored)",
            None,
            None,
            get(files::pass),
        ),
        json("/batches", "Create a batch", post(files::pass)),
        files(Method::GET, "/batches", "List batches", get(files::pass)),
        files(Method::GET, "/batches/{id}", "One batch", get(files::pass)),
        files(
            Method::POST,
            "/batches/{id}/cancel",
            "Cancel a batch",
            post(files::pass),
        ),
    ]
}

fn anthropic_routes() -> Vec<Route> {
    vec![
        streaming(route(
            Method::POST,
            "/messages",
            "Anthropic Messages (any model; translated for OpenAI-compatible backends)",
            Some("MessagesRequest"),
            Some("Message"),
            post(anthropic::messages),
        )),
        route(
            Method::POST,
            "/messages/count_tokens",
            "Anthropic token count (an estimate when no backend counts)",
            Some("MessagesRequest"),
            Some("TokenCount"),
            post(anthropic::count_tokens),
        ),
    ]
}

fn admin_routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/models",
            "Every model with its backends (keys shown as ***)",
            None,
            Some("AdminModelList"),
            get(admin::list_models),
        ),
        route(
            Method::POST,
            "/models",
            "Register or replace a runtime model",
            Some("AdminModel"),
            Some("AdminChange"),
            post(admin::register),
        ),
        route(
            Method::GET,
            "/models/{name}",
            "One model",
            None,
            Some("Object"),
            get(admin::get_model),
        ),
        route(
            Method::DELETE,
            "/models/{name}",
            "Delete a runtime model",
            None,
            Some("AdminChange"),
            delete(admin::delete),
        ),
        route(
            Method::POST,
            "/models/{name}/copy",
            "Copy a model under a new name, with overrides",
            Some("AdminCopy"),
            Some("AdminChange"),
            post(admin::copy),
        ),
        route(
            Method::GET,
            "/config",
            "The effective configuration (secrets shown as ***)",
            None,
            Some("Object"),
            get(admin::effective_config),
        ),
        route(
            Method::POST,
            "/config/reload",
            "Reload the config file",
            None,
            Some("Object"),
            post(admin::reload),
        ),
        route(
            Method::DELETE,
            "/cache",
            "Invalidate the response cache",
            None,
            Some("Object"),
            delete(cache::invalidate),
        ),
        route(
            Method::GET,
            "/api/logs",
            "The request log: filtered, paged",
            None,
            Some("Object"),
            get(logs::list),
        ),
        route(
            Method::GET,
            "/api/logs/{id}",
            "One logged request",
            None,
            Some("Object"),
            get(logs::get),
        ),
        route(
            Method::POST,
            "/api/logs/{id}/replay",
            "Send a logged request again",
            None,
            Some("Object"),
            post(logs::replay),
        ),
        route(
            Method::GET,
            "/keys",
            "Virtual keys (no secrets), with their spend this period",
            None,
            Some("Object"),
            get(keys::list_keys),
        ),
        route(
            Method::POST,
            "/keys",
            "Make a virtual key (201; its secret is in `key`, shown this once)",
            Some("Object"),
            Some("Object"),
            post(keys::create_key),
        ),
        route(
            Method::GET,
            "/keys/{id}",
            "One virtual key",
            None,
            Some("Object"),
            get(keys::get_key),
        ),
        route(
            Method::PATCH,
            "/keys/{id}",
            "Change a virtual key (`null` clears a field)",
            Some("Object"),
            Some("Object"),
            patch(keys::update_key),
        ),
        route(
            Method::DELETE,
            "/keys/{id}",
            "Revoke a virtual key",
            None,
            Some("Object"),
            delete(keys::revoke_key),
        ),
        route(
            Method::POST,
            "/keys/{id}/rotate",
            "A new secret for a virtual key (the old one stops working)",
            None,
            Some("Object"),
            post(keys::rotate_key),
        ),
        route(
            Method::GET,
            "/teams",
            "Teams, with their spend this period",
            None,
            Some("Object"),
            get(keys::list_teams),
        ),
        route(
            Method::POST,
            "/teams",
            "Make a team",
            Some("Object"),
            Some("Object"),
            post(keys::create_team),
        ),
        route(
            Method::GET,
            "/teams/{id}",
            "One team (by id or name)",
            None,
            Some("Object"),
            get(keys::get_team),
        ),
        route(
            Method::PATCH,
            "/teams/{id}",
            "Change a team (`null` clears a field)",
            Some("Object"),
            Some("Object"),
            patch(keys::update_team),
        ),
        route(
            Method::DELETE,
            "/teams/{id}",
            "Delete a team (its keys stay, without a team)",
            None,
            Some("Object"),
            delete(keys::delete_team),
        ),
        route(
            Method::GET,
            "/api/spend",
            "Requests, tokens and cost by key, team, model or day",
            None,
            Some("Object"),
            get(keys::spend),
        ),
        route(
            Method::GET,
            "/api/stats",
            "Request log statistics",
            None,
            Some("Object"),
            get(logs::stats),
        ),
        route(
            Method::GET,
            "/api/models",
            "Models and their backends' health",
            None,
            Some("Object"),
            get(logs::models),
        ),
    ]
}

fn root_routes() -> Vec<Route> {
    vec![
        // Clients probe the root at start (Claude Code sends `HEAD /`):
        // it answers like `/healthz` (a `HEAD` with no body).
        route(
            Method::GET,
            "/",
            "Liveness, as `/healthz` (`HEAD /` too, with no body)",
            None,
            Some("Object"),
            get(health::healthz),
        ),
        route(
            Method::GET,
            "/healthz",
            "Liveness",
            None,
            Some("Object"),
            get(health::healthz),
        ),
        route(
            Method::GET,
            "/health",
            "Readiness: 503 while no model has a backend in rotation",
            None,
            Some("Object"),
            get(health::readiness),
        ),
        route(
            Method::GET,
            "/stats",
            "Per-backend counters and latency percentiles",
            None,
            Some("Object"),
            get(health::stats),
        ),
        route(
            Method::GET,
            "/metrics",
            "Prometheus metrics (text exposition format)",
            None,
            None,
            get(metrics::render),
        ),
        route(
            Method::GET,
            "/openapi.json",
            "This document",
            None,
            Some("Object"),
            get(docs::openapi_json),
        ),
        route(
            Method::GET,
            "/docs",
            "The API documentation page (HTML, rendered from /openapi.json)",
            None,
            None,
            get(docs::page),
        ),
        route(
            Method::GET,
            "/admin",
            "The admin web UI: redirects to /admin/",
            None,
            None,
            get(ui::redirect),
        ),
        route(
            Method::GET,
            "/admin/",
            "The admin web UI (HTML; the API calls need the admin password or a session)",
            None,
            None,
            get(ui::index),
        ),
        route(
            Method::GET,
            "/admin/assets/{*path}",
            "The admin web UI's scripts and styles (embedded; ETag, no-cache)",
            None,
            None,
            get(ui::asset),
        ),
        route(
            Method::POST,
            "/admin/login",
            "Admin UI login: `{\"password\"}` sets an HttpOnly session cookie",
            Some("Object"),
            Some("Object"),
            post(ui::login),
        ),
        route(
            Method::POST,
            "/admin/logout",
            "Admin UI logout: ends the session",
            None,
            Some("Object"),
            post(ui::logout),
        ),
    ]
}

fn litellm_routes() -> Vec<Route> {
    use litellm_compat as l;
    vec![
        route(
            Method::POST,
            "/key/generate",
            "LiteLLM: make a virtual key (`key` is its secret)",
            Some("Object"),
            Some("Object"),
            post(l::generate),
        ),
        route(
            Method::GET,
            "/key/info",
            "LiteLLM: a key's limits and spend (`?key=`)",
            None,
            Some("Object"),
            get(l::info),
        ),
        route(
            Method::POST,
            "/key/update",
            "LiteLLM: change a key (`{\"key\", fields…}`)",
            Some("Object"),
            Some("Object"),
            post(l::update),
        ),
        route(
            Method::POST,
            "/key/delete",
            "LiteLLM: revoke keys (`{\"keys\": [...]}` or `key_aliases`)",
            Some("Object"),
            Some("Object"),
            post(l::delete),
        ),
        route(
            Method::GET,
            "/key/list",
            "LiteLLM: the keys' tokens, paged",
            None,
            Some("Object"),
            get(l::list),
        ),
        route(
            Method::POST,
            "/team/new",
            "LiteLLM: make a team",
            Some("Object"),
            Some("Object"),
            post(l::team_new),
        ),
        route(
            Method::GET,
            "/team/info",
            "LiteLLM: a team and its keys (`?team_id=`)",
            None,
            Some("Object"),
            get(l::team_info),
        ),
        route(
            Method::GET,
            "/spend/logs",
            "LiteLLM: logged requests with their spend (`?api_key=&start_date=&end_date=`)",
            None,
            Some("Object"),
            get(l::spend_logs),
        ),
        route(
            Method::POST,
            "/model/new",
            "LiteLLM: add a deployment (`model_name`, `litellm_params`) as a runtime model",
            Some("Object"),
            Some("Object"),
            post(l::model_new),
        ),
        route(
            Method::GET,
            "/model/info",
            "LiteLLM: every deployment (keys masked)",
            None,
            Some("Object"),
            get(l::model_info),
        ),
    ]
}

/// Every (method, full path) served, in axum's path syntax.
pub fn served() -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for group in Group::ALL {
        for r in group.routes() {
            for prefix in group.prefixes() {
                out.push((r.method.clone(), format!("{prefix}{}", r.path)));
            }
        }
    }
    out
}
