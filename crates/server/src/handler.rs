//! What HTTP handlers share: asking the control loop a question, reading committed state from
//! the store's read pool, and decoding JSON bodies into errors that name the field.

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::AppState;
use tokio::sync::oneshot;
use zenith_model::ValidationError;
use zenith_store::StoreReader;

/// Sends the control loop the message `make` builds around a reply channel and waits for the
/// answer; a full inbox answers 429 at once.
pub(crate) async fn ask<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> LoopMsg,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    state.control.try_send(make(tx)).map_err(|e| match e {
        tokio::sync::mpsc::error::TrySendError::Full(_) => {
            ApiError::Overloaded("server busy; retry later".into())
        }
        tokio::sync::mpsc::error::TrySendError::Closed(_) => ApiError::loop_stopped(),
    })?;
    rx.await.map_err(|_| ApiError::loop_stopped())
}

/// Like [`ask`], but waits for room in the inbox instead of answering 429: what agents send
/// (registrations, reports) is never refused for load.
pub(crate) async fn ask_waiting<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> LoopMsg,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .control
        .send(make(tx))
        .await
        .map_err(|_| ApiError::loop_stopped())?;
    rx.await.map_err(|_| ApiError::loop_stopped())
}

/// Runs `f` on the read pool (committed state only) on a blocking thread.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn StoreReader) -> Result<T, zenith_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || f(reader.as_ref()))
        .await
        .map_err(|e| ApiError::Unavailable(format!("read task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Decodes a JSON body into `T`; errors name the field path.
/// [`decode`] for an optional body: none, or JSON `null`, is the default.
pub(crate) fn decode_optional<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    match body.trim_ascii() {
        b"" | b"null" => Ok(T::default()),
        _ => decode(body),
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!("body is not valid JSON: {inner}"))
        } else {
            ApiError::Invalid(ValidationError::new(field, inner.to_string()))
        }
    })
}

/// Decodes an agent protocol body into `T`. Unlike [`decode`], malformed JSON is answered as
/// an invalid field (at the path where parsing stopped), as the agent API always has.
pub(crate) fn decode_agent_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ApiError::Invalid(ValidationError::new(
            if field == "." { String::new() } else { field },
            e.into_inner().to_string(),
        ))
    })
}
