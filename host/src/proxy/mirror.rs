//! Copies of a route's sampled requests, sent to its mirror pool after the
//! primary has its response, their answers read and discarded.
//!
//! A copy never touches the primary: it is sent from a task of its own on
//! the worker, with its own pick, admission (a copy finding no room is
//! dropped, never queued) and deadline. At most `MAX_MIRRORS_IN_FLIGHT`
//! copies are in flight per worker; past that, copies are dropped and
//! counted, so a slow or dead mirror pool costs the primary nothing and
//! holds bounded memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};

use super::{pick_avoiding, upstream_request, Proxy};
use crate::engine::{MirrorResult, Pool, Priority, RequestHeaders, RequestInfo};

/// Copies in flight per worker at most.
pub const MAX_MIRRORS_IN_FLIGHT: usize = 64;

/// A request as it went to the primary, to be sent again.
pub(super) struct MirrorCopy {
    pub method: http::Method,
    /// Path and query.
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: Full<Bytes>,
    pub class: Priority,
    pub hash: u64,
}

impl MirrorCopy {
    /// A request the fast path wrote for an endpoint (head and whole body).
    pub fn of_written(request: &[u8], class: Priority, hash: u64) -> Option<MirrorCopy> {
        let mut fields = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Request::new(&mut fields);
        let httparse::Status::Complete(head_len) = parsed.parse(request).ok()? else {
            return None;
        };
        let mut headers = http::HeaderMap::with_capacity(parsed.headers.len());
        for field in parsed.headers.iter() {
            headers.append(
                http::HeaderName::from_bytes(field.name.as_bytes()).ok()?,
                http::HeaderValue::from_bytes(field.value).ok()?,
            );
        }
        Some(MirrorCopy {
            method: http::Method::from_bytes(parsed.method?.as_bytes()).ok()?,
            uri: parsed.path?.parse().ok()?,
            headers,
            body: Full::new(Bytes::copy_from_slice(&request[head_len..])),
            class,
            hash,
        })
    }
}

impl Proxy {
    /// Sends `copy` to `pool` from a task of its own, unless this worker
    /// has `MAX_MIRRORS_IN_FLIGHT` copies in flight already.
    pub(super) fn mirror(&self, pool: Arc<Pool>, mut copy: MirrorCopy) {
        let in_flight = Arc::clone(&self.mirrors_in_flight);
        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_MIRRORS_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            pool.count_mirror(MirrorResult::Dropped);
            return;
        }
        let upstreams = Arc::clone(&self.upstreams);
        let deadline = Instant::now() + self.request_timeout;
        tokio::spawn(async move {
            let _slot = Slot(in_flight);
            let info = RequestInfo {
                priority: copy.class,
                hash: Some(copy.hash),
                ..RequestInfo::default()
            };
            // A copy's outcome says nothing about who placed the original.
            let mut placement = crate::engine::Placement::NONE;
            let picked = pick_avoiding(
                &pool,
                info,
                RequestHeaders::Map(&mut copy.headers),
                None,
                &mut placement,
            );
            let Some(guard) = picked.and_then(|picked| pool.try_start(&picked, copy.class)) else {
                pool.count_mirror(MirrorResult::Dropped);
                return;
            };
            let endpoint = Arc::clone(guard.endpoint());
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.method = copy.method;
            parts.uri = copy.uri;
            let body = Either::Right(copy.body);
            let request = upstream_request(
                &parts,
                copy.headers,
                body,
                &endpoint,
                pool.upstream(),
                false,
            );
            let sent = Instant::now();
            let exchange = async {
                let (response, lent) = upstreams.send(&endpoint, request, pool.upstream()).await?;
                let status = response.status();
                // Read to its end, so the connection can serve again.
                let whole = response.into_body().collect().await.is_ok();
                if whole {
                    upstreams.give_back(lent);
                }
                Ok::<_, super::upstream::UpstreamError>(status)
            };
            let outcome = tokio::time::timeout_at(deadline.into(), exchange).await;
            let elapsed = sent.elapsed().as_nanos() as u64;
            let served = matches!(&outcome, Ok(Ok(status)) if !status.is_server_error());
            pool.record_outcome(&endpoint, elapsed, served, &crate::engine::Placement::NONE);
            drop(guard);
            pool.count_mirror(if served {
                MirrorResult::Sent
            } else {
                MirrorResult::Failed
            });
        });
    }
}

/// A copy's place among the worker's copies in flight, given back however
/// its task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
