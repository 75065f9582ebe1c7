//! `GET /v1/events`: the live event stream as server-sent events. A client
//! that reconnects with `Last-Event-ID` first gets the kept events it
//! missed; one that falls too far behind is disconnected, and can resume
//! the same way.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt as _};
use tokio::sync::broadcast::error::RecvError;

use super::State;
use crate::engine::Event;

fn to_sse(event: &Event) -> Result<SseEvent, Infallible> {
    let data = serde_json::json!({
        "at_unix_ms": event.at_unix_ms,
        "data": event.data,
    });
    Ok(SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind)
        .data(data.to_string()))
}

/// The live events: `health` (every active-check transition), `alert`
/// (endpoints down, up, ejected, held out; failovers; panic; P0 to P4),
/// `plugin` (loaded, rejected, fault, quarantined) and `config` (what a
/// reload or an API change rebuilt), each with an id.
#[utoipa::path(get, path = "/v1/events", tag = "status",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event: the kept ones since are sent first")),
    responses((status = 200, description = "Server-sent events", body = String, content_type = "text/event-stream")))]
pub(super) async fn stream(
    Extract(state): State,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (missed, receiver) = state.alerts.events().since(last_seen);
    let replay = stream::iter(missed).map(|event: Arc<Event>| to_sse(&event));
    let stopping = state.stopping.subscribe();
    let live = stream::unfold(
        (receiver, stopping),
        |(mut receiver, mut stopping)| async move {
            let received = tokio::select! {
                received = receiver.recv() => Some(received),
                _ = stopping.wait_for(|stopping| *stopping) => None,
            };
            match received {
                Some(Ok(event)) => Some((to_sse(&event), (receiver, stopping))),
                // Fallen behind (the client reconnects with Last-Event-ID), or
                // shutting down.
                Some(Err(RecvError::Lagged(_) | RecvError::Closed)) | None => None,
            }
        },
    );
    Sse::new(replay.chain(live)).keep_alive(KeepAlive::default())
}
