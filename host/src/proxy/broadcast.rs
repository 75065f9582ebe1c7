//! Broadcast: one request sent to every eligible endpoint of a pool at once,
//! each response read to its end, and each endpoint's status or error
//! reported, for cache purges and other fan-out. Shared by the control
//! endpoint (`POST /v1/pools/{pool}/broadcast`) and routes with
//! `broadcast = true`.
//!
//! Each attempt is an ordinary exchange with its endpoint: it takes an
//! in-flight slot (`Pool::try_start`), its outcome is recorded for outlier
//! detection, and a refused connection holds the endpoint out as any
//! request's would. An endpoint at its capacity is reported as refused, not
//! waited for: a broadcast must reach that endpoint and no other, so neither
//! the queue (which may start it elsewhere) nor another endpoint will do.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::Incoming;
use serde::Serialize;

use super::framing::Refusal;
use super::{
    headers, rewritten_uri, upstream_request, ClientBody, ClientFault, ClientInfo, Proxy,
    ProxyBody, UpstreamError, Upstreams,
};
use crate::config::ProxyConfig;
use crate::engine::{Endpoint, Pool, Priority, Route};
use crate::metrics::ProxyError;

/// A request to broadcast: its head as it will be sent (hop-by-hop fields
/// gone, `X-Forwarded-*` added) and its whole body.
#[derive(Debug)]
pub struct Broadcast {
    head: http::request::Parts,
    body: Bytes,
}

impl Broadcast {
    /// `method` to `uri` with `headers` and `body`, on behalf of a client
    /// at `client` that spoke `proto` (`http` or `https`): headers are
    /// handled as for a forwarded request. The body's framing fields are
    /// dropped: it is whole, and sent with its own length.
    pub fn new(
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: Bytes,
        client: IpAddr,
        proto: &'static str,
    ) -> Self {
        headers::remove_hop_by_hop(&mut headers);
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        headers::add_forwarded(
            &mut headers,
            client,
            headers::forwarded_for(client).as_ref(),
            proto,
        );
        let (mut head, ()) = Request::new(()).into_parts();
        head.method = method;
        head.uri = uri;
        head.headers = headers;
        Broadcast { head, body }
    }
}

/// The control endpoint's broadcast settings, from `[proxy]`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `proxy.connect_timeout_ms`.
    pub connect: Duration,
    /// `proxy.request_timeout_ms`: the whole broadcast's deadline.
    pub request: Duration,
}

impl Timeouts {
    /// The timeouts of `config`.
    pub fn of(config: &ProxyConfig) -> Self {
        Timeouts {
            connect: Duration::from_millis(config.connect_timeout_ms),
            request: Duration::from_millis(config.request_timeout_ms),
        }
    }

    /// A connection pool for one broadcast: its connections close when it
    /// is dropped, so the control endpoint keeps none between calls.
    pub fn upstreams(&self) -> Upstreams {
        Upstreams::new(self.connect, self.request)
    }
}

/// Why an endpoint has no answer, or only part of one.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The endpoint was at its capacity (or the pool at its limit, or
    /// requests were queued): a broadcast does not wait.
    #[error("refused for capacity: the endpoint has no room, and a broadcast does not queue")]
    Capacity,
    /// The connection could not be opened, or failed in the exchange.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// No response (or not all of its body) by the deadline.
    #[error("no complete response within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The response body broke off.
    #[error("the response body broke off: {0}")]
    Body(#[source] hyper::Error),
}

/// What one endpoint answered.
#[derive(Debug)]
pub struct Outcome {
    /// The endpoint's `host:port`.
    pub address: String,
    /// Its response's status, if a response head came.
    pub status: Option<StatusCode>,
    /// What went wrong, if anything did.
    pub error: Option<AttemptError>,
    /// From the attempt's start to its end (the body read, or the error).
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the endpoint answered 2xx, body and all.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|status| status.is_success())
    }
}

/// A broadcast's answer, as both the control endpoint and a broadcast
/// route send it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The pool's name.
    pub pool: String,
    /// Each eligible endpoint's answer, in endpoint order.
    pub endpoints: Vec<EndpointAnswer>,
    /// Endpoints that answered 2xx, body and all.
    pub succeeded: usize,
    /// The others: an error, or a status other than 2xx.
    pub failed: usize,
}

/// One endpoint's answer to a broadcast.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointAnswer {
    /// `host:port`.
    #[schema(example = "10.0.0.7:8080")]
    pub address: String,
    /// The response's status, when a response head came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong: a refused or timed-out connection, no response by
    /// the deadline, a body that broke off, or no room at the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The attempt's duration, in whole ms.
    pub elapsed_ms: u64,
}

impl Summary {
    /// The summary of `outcomes` from `pool`.
    pub fn of(pool: &str, outcomes: &[Outcome]) -> Self {
        let succeeded = outcomes.iter().filter(|o| o.succeeded()).count();
        Summary {
            pool: pool.to_owned(),
            endpoints: outcomes
                .iter()
                .map(|outcome| EndpointAnswer {
                    address: outcome.address.clone(),
                    status: outcome.status.map(|status| status.as_u16()),
                    error: outcome.error.as_ref().map(ToString::to_string),
                    elapsed_ms: outcome.elapsed.as_millis() as u64,
                })
                .collect(),
            succeeded,
            failed: outcomes.len() - succeeded,
        }
    }
}

/// Sends `request` to every endpoint of `pool` eligible now, all at once,
/// over `upstreams` in the pool's protocol, as requests of `class`, each
/// read to its end by `deadline`. The outcomes are in endpoint order.
pub async fn send_to_all(
    pool: &Pool,
    upstreams: &Upstreams,
    request: &Broadcast,
    class: Priority,
    deadline: Instant,
) -> Vec<Outcome> {
    // Taken out of the set first: no guard of it is held across a wait.
    let endpoints: Vec<Arc<Endpoint>> = {
        let set = pool.endpoints();
        set.eligible
            .iter()
            .filter_map(|id| set.get(*id).cloned())
            .collect()
    };
    let started = Instant::now();
    let attempts = endpoints
        .into_iter()
        .map(|endpoint| attempt(pool, upstreams, endpoint, request, class, started, deadline));
    futures_util::future::join_all(attempts).await
}

/// One endpoint's exchange, counted against it like any request's.
async fn attempt(
    pool: &Pool,
    upstreams: &Upstreams,
    endpoint: Arc<Endpoint>,
    request: &Broadcast,
    class: Priority,
    started: Instant,
    deadline: Instant,
) -> Outcome {
    let begun = Instant::now();
    let (status, error) = match pool.try_start(&endpoint, class) {
        // Admission may start a request on another endpoint when the one
        // picked is full; a broadcast wants this one or none.
        Some(guard) if guard.endpoint().id == endpoint.id => {
            let answered = exchange(pool, upstreams, &endpoint, request, started, deadline).await;
            drop(guard);
            answered
        }
        _ => (None, Some(AttemptError::Capacity)),
    };
    Outcome {
        address: endpoint.address.clone(),
        status,
        error,
        elapsed: begun.elapsed(),
    }
}

/// Sends the request and reads the response to its end; records the
/// outcome as `Proxy::forward` does.
async fn exchange(
    pool: &Pool,
    upstreams: &Upstreams,
    endpoint: &Arc<Endpoint>,
    request: &Broadcast,
    started: Instant,
    deadline: Instant,
) -> (Option<StatusCode>, Option<AttemptError>) {
    let protocol = pool.upstream();
    let upstream = upstream_request(
        &request.head,
        request.head.headers.clone(),
        Either::Right(Full::new(request.body.clone())),
        endpoint,
        protocol,
        false,
    );
    let timeout = || AttemptError::Timeout(deadline.saturating_duration_since(started));
    let sent = Instant::now();
    let answered = tokio::time::timeout_at(
        deadline.into(),
        upstreams.send(endpoint, upstream, protocol),
    )
    .await;
    let elapsed = sent.elapsed().as_nanos() as u64;
    let (response, lent) = match answered {
        Ok(Ok(answered)) => answered,
        Ok(Err(error)) => {
            pool.record_outcome(endpoint, elapsed, false, &crate::engine::Placement::NONE);
            if error.is_connect() {
                pool.record_connect_failure(endpoint, &error.to_string());
            }
            return (None, Some(error.into()));
        }
        Err(_elapsed) => {
            pool.record_outcome(endpoint, elapsed, false, &crate::engine::Placement::NONE);
            return (None, Some(timeout()));
        }
    };
    let status = response.status();
    pool.record_outcome(
        endpoint,
        elapsed,
        !status.is_server_error(),
        &crate::engine::Placement::NONE,
    );
    let read = tokio::time::timeout_at(deadline.into(), drain(response.into_body())).await;
    let error = match read {
        Ok(Ok(())) => {
            upstreams.give_back(lent);
            None
        }
        Ok(Err(error)) => Some(AttemptError::Body(error)),
        Err(_elapsed) => Some(timeout()),
    };
    if error.is_some() {
        // A response cut off mid-body is a failure of its endpoint.
        pool.record_cut(endpoint);
    }
    (Some(status), error)
}

/// Reads a body to its end, keeping none of it.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

impl Proxy {
    /// Serves a request to a route with `broadcast = true`: its body read
    /// whole (up to the route's `max_body_bytes`), then sent to every
    /// eligible endpoint of `pool` by the deadline of a request that began
    /// at `started`; the client gets the JSON [`Summary`], 200 when every
    /// endpoint answered 2xx, else 502 (`broadcast`). A success is timed
    /// in the pool's and a named route's durations, as a forwarded
    /// response is.
    pub(super) async fn broadcast(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        route: &Route,
        pool: &Pool,
        class: Priority,
        (started, deadline): (Instant, Instant),
    ) -> Response<ProxyBody> {
        let limit = route.max_body_bytes;
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if limit > 0 && declared.is_some_and(|length| length > limit) {
            return self.refused(&Refusal::body_too_large(limit));
        }
        let body = ClientBody::new(body, limit);
        let fault = body.fault();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let refusal = fault
                    .refusal(limit)
                    .unwrap_or_else(ClientFault::broken_body);
                return self.refused(&refusal);
            }
        };
        if pool.endpoints().eligible.is_empty() {
            return self.no_endpoint(pool);
        }
        let uri = match route.rewrite.as_deref() {
            Some(rewrite) => rewritten_uri(&parts.uri, &rewrite.path),
            None => parts.uri,
        };
        let mut request = Broadcast::new(
            parts.method,
            uri,
            parts.headers,
            body,
            client.address.ip(),
            client.proto,
        );
        if let Some(rewrite) = route.rewrite.as_deref() {
            rewrite.request_headers.apply(&mut request.head.headers);
        }
        let outcomes = send_to_all(pool, &self.upstreams, &request, class, deadline).await;
        let summary = Summary::of(&pool.name, &outcomes);
        let status = if summary.failed == 0 {
            let took = started.elapsed();
            pool.duration.observe(took);
            if let Some(route) = &route.duration {
                route.observe(took);
            }
            StatusCode::OK
        } else {
            self.counters().count_error(ProxyError::Broadcast);
            ProxyError::Broadcast.status()
        };
        self.counters().count_status(status);
        let mut response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if status != StatusCode::OK {
            response = response.header("x-switchyard-error", ProxyError::Broadcast.code());
        }
        let json = serde_json::to_vec(&summary).expect("a summary serializes");
        response
            .body(ProxyBody::text(json))
            .expect("valid local response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Option<u16>, error: Option<AttemptError>) -> Outcome {
        Outcome {
            address: "127.0.0.1:1".into(),
            status: status.map(|s| StatusCode::from_u16(s).unwrap()),
            error,
            elapsed: Duration::from_micros(1_500),
        }
    }

    #[test]
    fn only_a_whole_2xx_answer_succeeds() {
        let outcomes = [
            outcome(Some(200), None),
            outcome(Some(204), None),
            outcome(Some(404), None),
            outcome(Some(503), None),
            outcome(None, Some(AttemptError::Capacity)),
            outcome(
                Some(200),
                Some(AttemptError::Timeout(Duration::from_secs(2))),
            ),
        ];
        let summary = Summary::of("web", &outcomes);
        assert_eq!((summary.succeeded, summary.failed), (2, 4));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["pool"], "web");
        assert_eq!(
            json["endpoints"][0],
            serde_json::json!({ "address": "127.0.0.1:1", "status": 200, "elapsed_ms": 1 })
        );
        assert!(json["endpoints"][4].get("status").is_none());
        assert!(json["endpoints"][4]["error"]
            .as_str()
            .unwrap()
            .starts_with("refused for capacity"));
        assert_eq!(
            json["endpoints"][5]["error"],
            "no complete response within 2000 ms"
        );
    }

    #[test]
    fn headers_are_those_of_a_forwarded_request() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("content-length", "7".parse().unwrap());
        headers.insert("x-a", "1".parse().unwrap());
        let request = Broadcast::new(
            Method::from_bytes(b"PURGE").unwrap(),
            "/cache/x?y=1".parse().unwrap(),
            headers,
            Bytes::from_static(b"payload"),
            "10.0.0.9".parse().unwrap(),
            "http",
        );
        let mut names: Vec<_> = request.head.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["x-a", "x-forwarded-for", "x-forwarded-proto"]);
        assert_eq!(request.head.headers["x-forwarded-for"], "10.0.0.9");
        assert_eq!(request.head.uri, "/cache/x?y=1");
    }
}
