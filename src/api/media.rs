//! The pass-through front doors routed by model: audio (transcriptions,
//! translations, speech), images (generations, edits), moderations and
//! rerank. Each names its endpoint and hands the request to the proxy
//! layer, like the chat door ([`super::openai`]).

use axum::extract::{Request, State};
use axum::response::Response;

use super::Shared;
use super::door::proxy;
use super::error::ApiError;
use crate::endpoint::Endpoint;

pub async fn transcriptions(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::AudioTranscriptions, req).await
}

pub async fn translations(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::AudioTranslations, req).await
}

pub async fn speech(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::AudioSpeech, req).await
}

pub async fn image_generations(
    State(s): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::ImagesGenerations, req).await
}

pub async fn image_edits(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::ImagesEdits, req).await
}

pub async fn moderations(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::Moderations, req).await
}

pub async fn rerank(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&s, Endpoint::Rerank, req).await
}
