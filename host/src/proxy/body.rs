//! The response body the proxy sends: the endpoint's body streamed through
//! (holding the endpoint's in-flight count until it ends), or a short local
//! message.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::upstream::PooledConnection;
use crate::engine::{Endpoint, InFlightGuard, Pool};
use crate::metrics::Metrics;

/// Where a response cut off mid-body by its endpoint is reported: the
/// endpoint's failures (and so its outlier detection) and the proxy's
/// metrics.
#[derive(Debug)]
pub struct CutReport {
    /// The pool the endpoint belongs to.
    pub pool: Arc<Pool>,
    /// The endpoint that sent the response.
    pub endpoint: Arc<Endpoint>,
    /// The proxy's counters.
    pub metrics: Arc<Metrics>,
    /// The worker serving the request.
    pub worker: usize,
}

impl CutReport {
    /// Counts the cut against the endpoint and in the metrics.
    pub fn report(&self) {
        self.metrics.worker(self.worker).count_cut();
        self.pool.record_cut(&self.endpoint);
    }
}

/// A response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from the endpoint; the guard keeps the request counted as in
    /// flight until the last frame (or until the client goes away).
    Upstream {
        /// The endpoint's body.
        body: Incoming,
        /// Released at the end of the body.
        guard: Option<InFlightGuard>,
        /// The connection it came on, given back to the pool when the body
        /// has been read to its end (and closed if it never is).
        connection: Option<PooledConnection>,
        /// Told when the endpoint breaks the body off.
        cut: Option<CutReport>,
    },
    /// Made by the proxy itself.
    Local(Full<Bytes>),
}

impl ProxyBody {
    /// The endpoint's response body, streamed through.
    pub fn upstream(
        body: Incoming,
        guard: Option<InFlightGuard>,
        connection: PooledConnection,
        cut: Option<CutReport>,
    ) -> Self {
        let mut connection = Some(connection);
        // hyper never polls a body that is already over (HEAD, 204, 304).
        if body.is_end_stream() {
            give_back(&mut connection);
        }
        ProxyBody::Upstream {
            body,
            guard,
            connection,
            cut,
        }
    }

    /// A local body with this text.
    pub fn text(text: impl Into<Bytes>) -> Self {
        ProxyBody::Local(Full::new(text.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                body,
                guard,
                connection,
                cut,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        guard.take();
                        give_back(connection);
                    }
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        guard.take();
                        give_back(connection);
                    }
                    Poll::Ready(Some(Err(_))) => {
                        guard.take();
                        connection.take();
                        if let Some(cut) = cut.take() {
                            cut.report();
                        }
                    }
                    _ => {}
                }
                polled
            }
            ProxyBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Local(full) => full.size_hint(),
        }
    }
}

fn give_back(connection: &mut Option<PooledConnection>) {
    if let Some((lent, upstreams)) = connection.take() {
        upstreams.give_back(lent);
    }
}

/// The request body sent to an endpoint: the client's body streamed through
/// (`Left`; the request cannot be retried), or a copy kept so the request
/// can be sent again (`Right`; cloned for every attempt).
pub type UpstreamBody = http_body_util::Either<Incoming, Full<Bytes>>;
