//! JSON request bodies: the media type a route accepts and the errors a bad body gets.

use super::error::ApiError;
use crate::http::Request;
use serde::de::DeserializeOwned;

/// Checks the body is declared JSON (or undeclared, as some OIP clients send it).
pub fn require_json(req: &Request) -> Result<(), ApiError> {
    match req.media_type().as_deref() {
        None | Some("application/json") => Ok(()),
        Some(t) if t.ends_with("+json") => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parses the body as JSON into `T`: 415 for a non-JSON type, 400 for malformed JSON, 422
/// for JSON of the wrong schema (serde_json caps nesting at 128, so deep nesting is a 400,
/// not a stack overflow).
pub fn parse<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    require_json(req)?;
    serde_json::from_slice(&req.body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable {
            code: "invalid_request",
            message: e.to_string(),
        },
        _ => ApiError::Malformed(e.to_string()),
    })
}
