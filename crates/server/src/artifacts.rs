//! Flow artifacts on the server: `PUT /agent/v1/artifacts/{run}/{step}/{instance}/{name}`
//! from the agent running that step instance (fenced by attempt and node), `GET` of the same
//! path for agents placing inputs. Stored as `<data>/artifacts/<run>/<step>/<instance>/<name>.tar`,
//! written to a temporary name and renamed, bounded in size, and deleted with the run.

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::{AppState, AuthedNode};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zenith_model::flow::RunId;
use zenith_model::{AttemptId, NodeId, ValidationError};

/// Where a run's artifacts live.
pub fn run_dir(root: &std::path::Path, run: RunId) -> PathBuf {
    root.join(run.0.to_string())
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(ValidationError::new(field, message))
}

/// Parses and bounds the path: numbers, and a name of `[A-Za-z0-9_]`.
fn artifact_path(
    root: &std::path::Path,
    (run, step, instance, name): &(String, String, String, String),
) -> Result<(RunId, u32, u32, PathBuf), ApiError> {
    let run: u64 = run.parse().map_err(|_| bad("run", "must be a run ID"))?;
    let step: u32 = step
        .parse()
        .map_err(|_| bad("step", "must be a step index"))?;
    let instance: u32 = instance
        .parse()
        .map_err(|_| bad("instance", "must be an instance index"))?;
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(bad("name", "must be 1-63 letters, digits or '_'"));
    }
    let path = run_dir(root, RunId(run))
        .join(step.to_string())
        .join(instance.to_string())
        .join(format!("{name}.tar"));
    Ok((RunId(run), step, instance, path))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutQuery {
    attempt: u64,
    node: String,
}

/// Who runs `attempt`: its node and flow step instance.
async fn owner_of(
    state: &AppState,
    attempt: AttemptId,
) -> Result<Option<(NodeId, Option<zenith_model::flow::StepRef>)>, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .control
        .try_send(LoopMsg::AttemptOwner { attempt, reply: tx })
        .map_err(|_| ApiError::Overloaded("server busy; retry later".into()))?;
    rx.await.map_err(|_| ApiError::loop_stopped())
}

/// `PUT`: only the node running the attempt of that very step instance may upload (the
/// node is the one the credential names; `node` in the query must agree).
pub async fn put(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    Path(p): Path<(String, String, String, String)>,
    Query(q): Query<PutQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let (run, step, instance, path) = artifact_path(&state.artifacts.root, &p)?;
    let node = NodeId::parse(&q.node)?;
    if node != authed.0 {
        return Err(ApiError::NotYours(format!(
            "this credential is node {}'s, not node {node}'s",
            authed.0
        )));
    }
    let owner = owner_of(&state, AttemptId(q.attempt)).await?;
    let fits = matches!(&owner, Some((n, Some(o)))
        if *n == node && o.run == run && o.step == step && o.instance == instance);
    if !fits {
        return Err(ApiError::Conflict(format!(
            "attempt {} is not running step instance {run}/{step}/{instance} on node {node}",
            q.attempt
        )));
    }
    let dir = path
        .parent()
        .ok_or(ApiError::Unavailable("bad artifact path".into()))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
    let part = path.with_extension(format!("part-{}", q.attempt));
    let written = write_limited(&part, body, state.artifacts.max_bytes).await;
    match written {
        Ok(n) => {
            tokio::fs::rename(&part, &path)
                .await
                .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
            state.metrics.artifact_bytes(n);
            Ok(axum::Json(serde_json::json!({"stored": n})).into_response())
        }
        Err(e) => {
            // Drop what arrived of the failed upload; there is nothing to drop when the part
            // file could not even be created.
            if let Err(rm) = tokio::fs::remove_file(&part).await {
                if rm.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %part.display(), error = %rm, "cannot remove a partial artifact");
                }
            }
            Err(e)
        }
    }
}

async fn write_limited(path: &std::path::Path, body: Body, max: u64) -> Result<u64, ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes =
            chunk.map_err(|e| ApiError::BadRequest(format!("upload broke off: {e}")))?;
        n += chunk.len() as u64;
        if n > max {
            return Err(ApiError::PayloadTooLarge(format!(
                "artifact larger than {max} bytes (--max-artifact-size)"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot store the artifact: {e}")))?;
    Ok(n)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    attempt: u64,
}

/// `GET`: the stored tar, streamed; only to a node running an attempt of the same run (the
/// step that takes it as input).
pub async fn get(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    Path(p): Path<(String, String, String, String)>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let (run, step, instance, path) = artifact_path(&state.artifacts.root, &p)?;
    let owner = owner_of(&state, AttemptId(q.attempt)).await?;
    let fits = matches!(&owner, Some((n, Some(o))) if *n == authed.0 && o.run == run);
    if !fits {
        return Err(ApiError::NotYours(format!(
            "node {} runs no attempt {} of run {run}",
            authed.0, q.attempt
        )));
    }
    let file = tokio::fs::File::open(&path).await.map_err(|_| {
        ApiError::NotFound(format!("no artifact {} of {run}/{step}/{instance}", p.3))
    })?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok(Body::from_stream(stream).into_response())
}

/// Where artifacts go and how big one may be.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    pub root: PathBuf,
    pub max_bytes: u64,
}

impl ArtifactStore {
    /// Deletes the artifacts of runs that were swept (most runs have none).
    pub fn remove_runs(&self, runs: &[RunId]) {
        for r in runs {
            let dir = run_dir(&self.root, *r);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot delete a swept run's artifacts");
                }
            }
        }
    }
}
