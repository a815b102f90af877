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
            "credential_list",
            "callback_settings",
            "guardrails",
            "files_settings",
            "assistant_settings",
        ],
    ),
    ("model_list.*", &["model_info"]),
    (
        "model_list.*.litellm_params",
        &[
            "max_tokens",
            "max_completion_tokens",
            "frequency_penalty",
            "presence_penalty",
            "seed",
            "stop",
            "reasoning_effort",
            "tags",
            "region_name",
            "merge_reasoning_content_in_choices",
            "use_in_pass_through",
        ],
    ),
    (
        "router_settings",
        &["cache_responses", "set_verbose", "provider_budget_config"],
    ),
    (
        "general_settings",
        &[
            "database_connection_pool_limit",
            "alerting",
            "alerting_threshold",
            "proxy_batch_write_at",
            "disable_spend_logs",
            "disable_master_key_return",
            "allowed_routes",
            "public_routes",
            "ui_access_mode",
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
        "model_info" => "only id, base_model and max_input_tokens are read",
        "max_tokens"
        | "max_completion_tokens"
        | "frequency_penalty"
        | "presence_penalty"
        | "seed"
        | "stop"
        | "reasoning_effort" => {
            "a default per dialect is not translated; use the model's `parameters` (temperature and top_p are read)"
        }
        _ => return None,
    })
}
