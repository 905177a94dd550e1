//! Extractors whose rejections are JSON [`ApiError`]s instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};

use super::error::ApiError;

/// A JSON request body; a bad body is a 400/415 JSON error.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters; a malformed path is a 400 JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; a malformed query string is a 400 JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
