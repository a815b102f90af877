//! `GET /openapi.json`, written from the route table ([`super::routes`]),
//! and `GET /docs`, a page that renders it, embedded in the binary (no CDN,
//! no network).

use std::sync::OnceLock;

use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ComponentsBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder,
    Tag,
};

use super::routes::{Group, Route};

const PAGE: &str = include_str!("docs.html");

pub async fn openapi_json() -> Response {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        Bytes::from(
            document()
                .to_json()
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
        )
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response()
}

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for group in Group::ALL {
        for r in group.routes() {
            for prefix in group.prefixes() {
                let path = format!("{prefix}{}", openapi_path(r.path));
                paths.add_path_operation(
                    &path,
                    vec![http_method(&r.method)],
                    operation(group, &r, &path),
                );
            }
        }
    }
    let tags: Vec<Tag> = Group::ALL.iter().map(|g| Tag::new(g.tag())).collect();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("yallmp")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "An OpenAI- and Anthropic-compatible LLM proxy. Request bodies pass through: \
                     the schemas name the fields yallmp knows, and every other field reaches the \
                     backend unchanged.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components()))
        .tags(Some(tags))
        .build()
}

/// axum's `{*id}` is OpenAPI's `{id}`.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::DELETE => HttpMethod::Delete,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

fn operation(group: Group, r: &Route, path: &str) -> utoipa::openapi::path::Operation {
    let error = match group {
        Group::Anthropic => "AnthropicError",
        _ => "Error",
    };
    let mut ok = ResponseBuilder::new().description("Success");
    match r.response {
        Some(schema) => {
            ok = ok.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            );
        }
        None => {
            let media = if r.path == "/docs" {
                "text/html"
            } else if r.path == "/audio/speech" || r.path.ends_with("/content") {
                "application/octet-stream"
            } else {
                "text/plain"
            };
            ok = ok.content(
                media,
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                    .build(),
            );
        }
    }
    if r.streams {
        ok = ok.content(
            "text/event-stream",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                .build(),
        );
    }
    let mut op = OperationBuilder::new()
        .tag(group.tag())
        .summary(Some(r.summary))
        .operation_id(Some(operation_id(&r.method, path)))
        .response("200", ok.build())
        .response(
            "default",
            ResponseBuilder::new()
                .description("An error")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(error)))
                        .build(),
                )
                .build(),
        );
    if r.request == Some("Multipart") {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "multipart/form-data",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object).build()))
                        .build(),
                )
                .build(),
        ));
    } else if let Some(schema) = r.request {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                )
                .build(),
        ));
    }
    for name in path_params(path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
        );
    }
    op.build()
}

fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for c in path.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    id
}

/// The `{name}`s of an OpenAPI path.
fn path_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

// ---- schemas: the fields yallmp knows; every object takes more ----

fn string(desc: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(desc))
        .into()
}

fn typed(t: Type, desc: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(t)
        .description(Some(desc))
        .into()
}

fn array_of(item: impl Into<RefOr<Schema>>, desc: &str) -> Schema {
    ArrayBuilder::new()
        .items(item.into())
        .description(Some(desc))
        .into()
}

fn any_object(desc: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(desc))
        .into()
}

/// An object with these properties (name, schema, required) that also
/// takes any other property.
fn object(desc: &str, props: Vec<(&str, Schema, bool)>) -> Schema {
    let mut b = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(desc))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)));
    for (name, schema, required) in props {
        b = b.property(name, schema);
        if required {
            b = b.required(name);
        }
    }
    b.into()
}

fn r(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

fn components() -> utoipa::openapi::Components {
    let model = || string("A model name from GET /v1/models (exact, or one a wildcard serves)");
    let stream = || typed(Type::Boolean, "Answer with an event stream");
    let schemas: Vec<(&str, Schema)> = vec![
        ("Object", any_object("A JSON object")),
        (
            "ChatCompletionRequest",
            object(
                "OpenAI chat completion request; unknown fields pass through",
                vec![
                    ("model", model(), true),
                    (
                        "messages",
                        array_of(any_object("A chat message"), "The conversation"),
                        true,
                    ),
                    ("stream", stream(), false),
                    ("tools", array_of(any_object("A tool"), "Tools"), false),
                    ("max_tokens", typed(Type::Integer, "Token limit"), false),
                    (
                        "temperature",
                        typed(Type::Number, "Sampling temperature"),
                        false,
                    ),
                    (
                        "cache",
                        any_object("The proxy's per-request cache controls (never sent upstream)"),
                        false,
                    ),
                ],
            ),
        ),
        (
            "ChatCompletion",
            object(
                "OpenAI chat completion",
                vec![
                    ("id", string("Completion id"), false),
                    ("object", string("`chat.completion`"), false),
                    ("model", string("The model that answered"), false),
                    ("choices", array_of(any_object("A choice"), "Choices"), true),
                    ("usage", any_object("Token usage"), false),
                ],
            ),
        ),
        (
            "EmbeddingRequest",
            object(
                "OpenAI embeddings request",
                vec![
                    ("model", model(), true),
                    (
                        "input",
                        any_value("A string, a list of strings or of token lists"),
                        true,
                    ),
                ],
            ),
        ),
        (
            "EmbeddingList",
            object(
                "OpenAI embeddings",
                vec![
                    ("object", string("`list`"), false),
                    (
                        "data",
                        array_of(any_object("One embedding"), "Embeddings"),
                        true,
                    ),
                    ("model", string("Model"), false),
                    ("usage", any_object("Token usage"), false),
                ],
            ),
        ),
        (
            "ResponsesRequest",
            object(
                "OpenAI Responses API request",
                vec![
                    ("model", model(), true),
                    ("input", any_value("Text or input items"), false),
                    ("stream", stream(), false),
                ],
            ),
        ),
        (
            "CompletionRequest",
            object(
                "Legacy text completion request",
                vec![
                    ("model", model(), true),
                    ("prompt", any_value("Prompt text"), false),
                    ("stream", stream(), false),
                ],
            ),
        ),
        (
            "Model",
            object(
                "A model",
                vec![
                    ("id", string("The name clients send"), true),
                    ("object", string("`model`"), true),
                    ("created", typed(Type::Integer, "Unix seconds"), false),
                    ("owned_by", string("`yallmp`"), false),
                ],
            ),
        ),
        (
            "ModelList",
            object(
                "The models",
                vec![
                    ("object", string("`list`"), true),
                    ("data", array_of(r("Model"), "Models"), true),
                ],
            ),
        ),
        (
            "MessagesRequest",
            object(
                "Anthropic Messages request; unknown fields pass through",
                vec![
                    ("model", model(), true),
                    (
                        "messages",
                        array_of(any_object("A turn"), "The conversation"),
                        true,
                    ),
                    ("max_tokens", typed(Type::Integer, "Token limit"), false),
                    ("system", any_value("System prompt: text or blocks"), false),
                    ("stream", stream(), false),
                ],
            ),
        ),
        (
            "Message",
            object(
                "Anthropic message",
                vec![
                    ("id", string("Message id"), false),
                    ("type", string("`message`"), false),
                    ("role", string("`assistant`"), false),
                    (
                        "content",
                        array_of(any_object("A content block"), "Content"),
                        true,
                    ),
                    ("stop_reason", string("Why it stopped"), false),
                    ("usage", any_object("Token usage"), false),
                ],
            ),
        ),
        (
            "TokenCount",
            object(
                "Anthropic token count",
                vec![("input_tokens", typed(Type::Integer, "Input tokens"), true)],
            ),
        ),
        (
            "Error",
            object(
                "OpenAI-shaped error",
                vec![(
                    "error",
                    object(
                        "The error",
                        vec![
                            ("message", string("What went wrong"), true),
                            ("type", string("Error type"), false),
                            ("code", any_value("Error code"), false),
                        ],
                    ),
                    true,
                )],
            ),
        ),
        (
            "AnthropicError",
            object(
                "Anthropic-shaped error",
                vec![
                    ("type", string("`error`"), true),
                    (
                        "error",
                        object(
                            "The error",
                            vec![
                                ("type", string("Error type"), true),
                                ("message", string("What went wrong"), true),
                            ],
                        ),
                        true,
                    ),
                ],
            ),
        ),
        (
            "AdminModel",
            object(
                "A model for the admin API (the backend keys of model_params, flat)",
                vec![
                    ("model_name", string("The name clients use"), true),
                    (
                        "api_type",
                        string("openai, anthropic, azure, bedrock or stub"),
                        false,
                    ),
                    ("api_base", string("Base URL"), false),
                    ("api_key", string("Key (never shown back)"), false),
                    ("model", string("Upstream model"), false),
                    ("target_model", string("Upstream model (wins)"), false),
                    ("api_version", string("Azure api-version"), false),
                    ("deployment", string("Azure deployment"), false),
                    ("aws_region_name", string("Bedrock region"), false),
                    ("aws_profile_name", string("Bedrock: AWS profile"), false),
                    ("vertex_project", string("Vertex AI project"), false),
                    ("vertex_location", string("Vertex AI location"), false),
                    (
                        "strip_prefix",
                        typed(Type::Boolean, "Wildcard: strip the prefix"),
                        false,
                    ),
                ],
            ),
        ),
        (
            "AdminCopy",
            object(
                "A copy: the new name and fields to override",
                vec![("new_name", string("The copy's name"), true)],
            ),
        ),
        (
            "AdminModelList",
            object(
                "Every model",
                vec![
                    ("object", string("`list`"), true),
                    (
                        "data",
                        array_of(any_object("A model with its backends"), "Models"),
                        true,
                    ),
                ],
            ),
        ),
        (
            "AdminChange",
            any_object("The change made and the model as it is now"),
        ),
    ];
    let mut b = ComponentsBuilder::new();
    for (name, schema) in schemas {
        b = b.schema(name, schema);
    }
    b.build()
}

/// Any JSON value.
fn any_value(desc: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(desc))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_openapi_syntax() {
        assert_eq!(openapi_path("/models/{*id}"), "/models/{id}");
        assert_eq!(path_params("/admin/api/logs/{id}/replay"), ["id"]);
        assert_eq!(
            operation_id(&Method::GET, "/v1/models/{id}"),
            "get_v1_models__id_"
        );
    }
}
