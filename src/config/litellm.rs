//! The LiteLLM keys yallmp reads but does not implement: the loader takes
//! them out of the tree with one warning each, so a LiteLLM config loads
//! (every other unknown key is an error).

/// LiteLLM keys that load with a warning instead of an error, by section.
/// `*` stands for every item of a list.
pub const LITELLM_ACCEPTED: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "litellm_settings",
            "environment_variables",
            "credential_list",
            "callback_settings",
            "guardrails",
            "files_settings",
            "assistant_settings",
        ],
    ),
    ("model_list.*", &["model_info", "rpm", "tpm"]),
    (
        "model_list.*.litellm_params",
        &[
            "rpm",
            "tpm",
            "max_tokens",
            "custom_llm_provider",
            "drop_params",
            "tags",
            "region_name",
            "merge_reasoning_content_in_choices",
            "use_in_pass_through",
        ],
    ),
    (
        "router_settings",
        &[
            "routing_strategy_args",
            "enable_pre_call_checks",
            "cache_responses",
            "set_verbose",
            "provider_budget_config",
        ],
    ),
    (
        "general_settings",
        &[
            "database_connection_pool_limit",
            "store_model_in_db",
            "alerting",
            "alerting_threshold",
            "proxy_batch_write_at",
            "disable_spend_logs",
            "disable_master_key_return",
            "allowed_routes",
            "public_routes",
            "ui_access_mode",
            "max_parallel_requests",
            "infer_model_from_keys",
            "use_client_credentials_pass_through_routes",
            "pass_through_endpoints",
            "forward_openai_org_id",
            "forward_client_headers_to_llm_api",
        ],
    ),
];

/// Why a key of [`LITELLM_ACCEPTED`] is ignored, where yallmp has a near
/// equivalent to point to; added to its warning.
pub fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "max_parallel_requests" => {
            "LiteLLM's per-deployment limit; yallmp has only global_max_parallel_requests"
        }
        "rpm" | "tpm" => "no per-backend limits; see proxy_settings.rate_limits",
        "routing_strategy_args" => "for latency-based, use router_settings.latency_buffer",
        "model_info" => "base_model is read; backends keep their MODEL#N names",
        "environment_variables" => "use the process environment or .env",
        _ => return None,
    })
}
