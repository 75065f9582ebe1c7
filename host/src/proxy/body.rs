//! The response body the proxy sends: the endpoint's body streamed through
//! (holding the endpoint's in-flight count until it ends), or a short local
//! message.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::engine::InFlightGuard;

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
    },
    /// Made by the proxy itself.
    Local(Full<Bytes>),
}

impl ProxyBody {
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
            ProxyBody::Upstream { body, guard } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
                    guard.take();
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

/// The request body sent to an endpoint: the client's body streamed through
/// (`Left`; the request cannot be retried), or a copy kept so the request
/// can be sent again (`Right`; cloned for every attempt).
pub type UpstreamBody = http_body_util::Either<Incoming, Full<Bytes>>;
