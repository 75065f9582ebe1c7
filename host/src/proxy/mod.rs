//! The HTTP/1.1 reverse proxy: accepts connections, routes each request to a
//! pool, asks the pool for an endpoint, forwards over keep-alive connection
//! pools, and streams the answer back.

mod body;
mod headers;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use body::ProxyBody;

use crate::config::ProxyConfig;
use crate::engine::{PickRequest, RequestInfo, Routes};
use crate::metrics::{Metrics, ProxyError};

/// The forwarding half of the proxy, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    routes: Routes,
    client: Client<HttpConnector, Incoming>,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy over `routes` with the timeouts and pool settings of `config`.
    pub fn new(config: &ProxyConfig, routes: Routes, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .retry_canceled_requests(true)
            .build(connector);
        Proxy {
            routes,
            client,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            metrics,
        }
    }

    /// Serves one request end to end; errors become short local responses.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        self.metrics.count_request();
        let host = request_host(&request);
        let Some(pool) = self.routes.find(host.as_deref(), request.uri().path()) else {
            return self.error(
                ProxyError::NoRoute,
                format!(
                    "no route for host `{}` and path `{}`",
                    host.as_deref().unwrap_or("-"),
                    request.uri().path()
                ),
            );
        };
        let info = RequestInfo {
            hash: Some(hash_client(client.ip())),
            ..RequestInfo::default()
        };
        let picked = pool.pick(&mut PickRequest {
            info,
            headers: request.headers_mut(),
        });
        let Some(endpoint) = picked else {
            return self.error(
                ProxyError::NoEndpoint,
                format!("no endpoint available in pool `{}`", pool.name),
            );
        };

        let uri = match upstream_uri(&endpoint.authority, request.uri()) {
            Ok(uri) => uri,
            Err(error) => {
                return self.error(
                    ProxyError::BadRequest,
                    format!("bad request target: {error}"),
                )
            }
        };
        *request.uri_mut() = uri;
        headers::remove_hop_by_hop(request.headers_mut());
        headers::add_forwarded(request.headers_mut(), client.ip());

        let guard = endpoint.start();
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.request_timeout, self.client.request(request)).await;
        let elapsed = started.elapsed().as_nanos() as u64;
        match outcome {
            Ok(Ok(mut response)) => {
                pool.record_outcome(&endpoint, elapsed, !response.status().is_server_error());
                self.metrics.count_status(response.status());
                headers::remove_hop_by_hop(response.headers_mut());
                response.map(|body| ProxyBody::Upstream {
                    body,
                    guard: Some(guard),
                })
            }
            Ok(Err(error)) => {
                pool.record_outcome(&endpoint, elapsed, false);
                let (kind, what) = if error.is_connect() {
                    (ProxyError::Connect, "cannot connect to")
                } else {
                    (ProxyError::Upstream, "connection failed with")
                };
                let cause = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string);
                self.error(
                    kind,
                    format!("{what} endpoint {}: {cause}", endpoint.address),
                )
            }
            Err(_elapsed) => {
                pool.record_outcome(&endpoint, elapsed, false);
                self.error(
                    ProxyError::Timeout,
                    format!(
                        "endpoint {} sent no response within {} ms",
                        endpoint.address,
                        self.request_timeout.as_millis()
                    ),
                )
            }
        }
    }

    fn error(&self, kind: ProxyError, reason: String) -> Response<ProxyBody> {
        self.metrics.count_error(kind);
        let status = kind.status();
        self.metrics.count_status(status);
        tracing::debug!(status = status.as_u16(), "{reason}");
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-switchyard-error", kind.code())
            .body(ProxyBody::text(format!("switchyard: {reason}\n")))
            .expect("valid local response")
    }
}

/// The request's host without port: the `Host` header, or the URI's host.
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    };
    Some(host.to_ascii_lowercase())
}

/// `http://ENDPOINT/path?query`.
fn upstream_uri(authority: &http::uri::Authority, original: &Uri) -> Result<Uri, http::Error> {
    let path_and_query = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
}

/// The client address as a hash key (splitmix64 finaliser over its bits).
fn hash_client(ip: IpAddr) -> u64 {
    let bits = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let value = u128::from(v6);
            (value as u64) ^ ((value >> 64) as u64)
        }
    };
    let mut z = bits.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Accepts connections on `listener` until `shutdown` completes, then stops
/// accepting and waits up to `grace` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                let service = service_fn(move |request| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!("client connection ended: {error}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown grace of {} ms ran out with requests in flight",
            grace.as_millis()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_taken_without_port() {
        let request = Request::builder()
            .uri("/x")
            .header("host", "Example.COM:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request).as_deref(), Some("example.com"));
        let request = Request::builder()
            .uri("/x")
            .header("host", "[::1]:80")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request).as_deref(), Some("::1"));
    }

    #[test]
    fn upstream_uri_keeps_path_and_query() {
        let authority: http::uri::Authority = "127.0.0.1:9000".parse().unwrap();
        let uri = upstream_uri(&authority, &"/a/b?c=d".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/a/b?c=d");
    }

    #[test]
    fn client_hash_is_stable_and_spreads() {
        let a = hash_client("10.0.0.1".parse().unwrap());
        assert_eq!(a, hash_client("10.0.0.1".parse().unwrap()));
        assert_ne!(a, hash_client("10.0.0.2".parse().unwrap()));
    }
}
