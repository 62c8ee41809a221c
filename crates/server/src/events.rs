//! `GET /api/v1/events`: committed transitions as server-sent events.
//!
//! The control loop publishes one message per committed batch (only while someone listens)
//! on a bounded broadcast channel ([`EVENT_BUFFER`] batches); a subscriber that falls behind
//! gets a `lagged` event telling how many batches it missed, and should re-read state.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use zenith_model::{JobId, ValidationError};
use zenith_protocol::api::Event;

/// Committed batches buffered for slow subscribers.
pub const EVENT_BUFFER: usize = 1024;
/// An idle stream carries a comment this often, to keep proxies from closing it.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub type EventBatch = Arc<Vec<Event>>;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    job: Option<u64>,
    run: Option<u64>,
    /// Comma-separated kinds: job, attempt, node, run, step.
    kind: Option<String>,
}

struct Filter {
    job: Option<JobId>,
    run: Option<zenith_model::flow::RunId>,
    kinds: Option<Vec<String>>,
}

impl Filter {
    fn accepts(&self, e: &Event) -> bool {
        if matches!(e, Event::Lagged { .. }) {
            return true;
        }
        if let Some(j) = self.job {
            if e.job() != Some(j) {
                return false;
            }
        }
        if let Some(r) = self.run {
            if e.run() != Some(r) {
                return false;
            }
        }
        self.kinds
            .as_ref()
            .is_none_or(|k| k.iter().any(|k| k == e.kind()))
    }
}

/// One event as SSE (`data: <json>`); `None` (logged) if it cannot be encoded.
fn sse(e: &Event) -> Option<SseEvent> {
    SseEvent::default()
        .json_data(e)
        .map_err(|err| tracing::warn!(error = %err, "cannot serialize an event"))
        .ok()
}

#[utoipa::path(
    get, path = "/events", operation_id = "events", tag = "events", params(EventQuery),
    responses((status = 200, description = "Server-sent events: each `data:` line one committed transition (an Event)", content_type = "text/event-stream", body = zenith_protocol::api::Event))
)]
pub async fn events(
    State(state): State<AppState>,
    axum::Extension(p): axum::Extension<crate::users::Principal>,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    // The stream carries every namespace's transitions; one job's only is for those who may
    // see the job.
    match q.job {
        Some(id) => {
            crate::api::visible_job(&state, &p, JobId(id)).await?;
        }
        None if p.reads_all() => {}
        None => {
            return Err(ApiError::Denied(format!(
            "{} ({}) may follow one job's events (job=ID); the whole stream covers every namespace",
            p.user, p.role
        )))
        }
    }
    let kinds = match q.kind.as_deref() {
        None | Some("") => None,
        Some(list) => {
            let kinds: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if let Some(bad) = kinds
                .iter()
                .find(|k| !matches!(k.as_str(), "job" | "attempt" | "node" | "run" | "step"))
            {
                return Err(ApiError::Invalid(ValidationError::new(
                    "kind",
                    format!("unknown kind {bad:?}; use job, attempt, node, run or step"),
                )));
            }
            Some(kinds)
        }
    };
    let filter = Filter {
        job: q.job.map(JobId),
        run: q.run.map(zenith_model::flow::RunId),
        kinds,
    };
    let rx = state.events.subscribe();
    // Batches flushed before this subscription carry no events: answer only once they are in
    // the store, where the client's next read finds them.
    crate::handler::ask(&state, |reply| crate::control::LoopMsg::Barrier { reply }).await?;
    let shutdown = state.shutdown.clone();
    // One committed batch becomes the events of it this subscriber asked for.
    let batches = futures_util::stream::unfold(
        (rx, shutdown, filter),
        |(mut rx, mut shutdown, filter)| async move {
            loop {
                let events: Vec<SseEvent> = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(batch) => batch.iter().filter(|e| filter.accepts(e)).filter_map(sse).collect(),
                        Err(broadcast::error::RecvError::Lagged(n)) => sse(&Event::Lagged { missed: n }).into_iter().collect(),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = shutdown.changed() => return None,
                };
                if !events.is_empty() {
                    return Some((events, (rx, shutdown, filter)));
                }
            }
        },
    );
    let stream = batches
        .flat_map(futures_util::stream::iter)
        .map(Ok::<_, std::convert::Infallible>);
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
