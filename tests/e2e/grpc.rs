//! gRPC through the proxy, tonic on both sides: a unary call, a
//! server-streaming call with its trailers, an error status, the client's
//! `grpc-timeout`, and endpoints spoken to in HTTP/2 with prior knowledge
//! (h2c) or over TLS (ALPN `h2`), and in HTTP/1.1 over TLS.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, KeyPair};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::support::*;

/// The one message of the test service, both ways.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

type Answer<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;

/// `/test.Notes/Echo`: the note back, signed with the server's name; a
/// note saying `fail` is answered UNAVAILABLE, one saying `slow` after 2 s.
#[derive(Clone)]
struct Echo(&'static str);

impl tonic::server::UnaryService<Note> for Echo {
    type Response = Note;
    type Future = Answer<Note>;

    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        let name = self.0;
        Box::pin(async move {
            let note = request.into_inner();
            if name == "down" {
                return Err(Status::unavailable("this server is down"));
            }
            match note.text.as_str() {
                "fail" => Err(Status::unavailable("asked to fail")),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(tonic::Response::new(note))
                }
                text => Ok(tonic::Response::new(Note {
                    text: format!("{text} from {name}"),
                    count: note.count,
                })),
            }
        })
    }
}

/// `/test.Notes/Count`: `count` notes, numbered, then the trailers.
#[derive(Clone)]
struct Count;

type NoteStream = Pin<Box<dyn futures_util::Stream<Item = Result<Note, Status>> + Send>>;

impl tonic::server::ServerStreamingService<Note> for Count {
    type Response = Note;
    type ResponseStream = NoteStream;
    type Future = Answer<NoteStream>;

    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        Box::pin(async move {
            let count = request.into_inner().count;
            let notes = futures_util::stream::iter((0..count).map(|i| {
                Ok(Note {
                    text: format!("note {i}"),
                    count: i,
                })
            }));
            Ok(tonic::Response::new(Box::pin(notes) as NoteStream))
        })
    }
}

/// The service's routing, as tonic's generated servers do it.
async fn serve_call(
    name: &'static str,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let codec = ProstCodec::<Note, Note>::default();
    Ok(match request.uri().path() {
        "/test.Notes/Echo" => {
            tonic::server::Grpc::new(codec)
                .unary(Echo(name), request)
                .await
        }
        "/test.Notes/Count" => {
            tonic::server::Grpc::new(codec)
                .server_streaming(Count, request)
                .await
        }
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// A gRPC server on loopback, in HTTP/2 with prior knowledge, or over TLS
/// with this certificate and key (PEM).
async fn grpc_server(
    name: &'static str,
    tls: Option<(String, String)>,
) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let connections = Arc::new(AtomicU64::new(0));
    let accepted = Arc::clone(&connections);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|(cert, key)| tls_acceptor(&cert, &key, &[b"h2", b"http/1.1"]));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| serve_call(name, request));
                let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            });
        }
    });
    (addr, connections, task)
}

/// A TLS server config with this certificate and key (PEM), offering
/// `alpn`.
fn tls_acceptor(cert: &str, key: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A tonic client to the proxy's plain listener (h2c).
async fn client(proxy: &Switchyard) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", proxy.proxy))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn echo(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    text: &str,
    timeout: Option<Duration>,
) -> Result<Note, Status> {
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(Note {
        text: text.into(),
        count: 7,
    });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    grpc.unary(
        request,
        PathAndQuery::from_static("/test.Notes/Echo"),
        ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn count(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    count: u32,
) -> Result<(Vec<Note>, Option<tonic::metadata::MetadataMap>), Status> {
    grpc.ready().await.unwrap();
    let request = tonic::Request::new(Note {
        text: String::new(),
        count,
    });
    let response = grpc
        .server_streaming(
            request,
            PathAndQuery::from_static("/test.Notes/Count"),
            ProstCodec::default(),
        )
        .await?;
    let mut stream = response.into_inner();
    let mut notes = Vec::new();
    while let Some(note) = stream.message().await? {
        notes.push(note);
    }
    let trailers = stream.trailers().await?;
    Ok((notes, trailers))
}

/// One `/test.Notes/Echo` call by hand over HTTP/2 with this
/// `grpc-timeout`: the response's status and headers.
async fn raw_call(proxy: &Switchyard, text: &str, timeout: &str) -> (u16, http::HeaderMap) {
    use prost::Message as _;
    let stream = tokio::net::TcpStream::connect(proxy.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let message = Note {
        text: text.into(),
        count: 1,
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let request = http::Request::post(format!("http://{}/test.Notes/Echo", proxy.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

fn pool(address: SocketAddr, protocol_keys: &str) -> String {
    format!(
        "[[pools]]\nname = \"grpc\"\n{protocol_keys}\nendpoints = [{{ address = \"{address}\" }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_errors_and_deadlines_pass_through_to_an_h2c_endpoint() {
    let plugins = tempfile::tempdir().unwrap();
    let (server, connections, _task) = grpc_server("h2c", None).await;
    let proxy = Switchyard::start(plugins.path(), &pool(server, "protocol = \"h2c\""));
    let mut grpc = client(&proxy).await;

    let note = echo(&mut grpc, "hello", None).await.unwrap();
    assert_eq!((note.text.as_str(), note.count), ("hello from h2c", 7));

    // A server stream, each message in order, and its trailers.
    let (notes, trailers) = count(&mut grpc, 50).await.unwrap();
    assert_eq!(notes.len(), 50);
    assert!(notes.iter().enumerate().all(|(i, n)| n.count == i as u32));
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // The endpoint's error status reaches the client as it was sent.
    let status = echo(&mut grpc, "fail", None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "asked to fail");

    // The client's deadline bounds the request at the proxy (its
    // request_timeout_ms is 2000 here, the call would take 2 s). A raw
    // HTTP/2 call, as tonic's client would give up at the same moment.
    let started = Instant::now();
    let (status, headers) = raw_call(&proxy, "slow", "200m").await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(status, 200);
    assert_eq!(headers.get("grpc-status").unwrap(), "4", "{headers:?}");
    assert_eq!(headers.get("x-switchyard-error").unwrap(), "timeout");
    // Many calls at once share one HTTP/2 connection to the endpoint per
    // proxy worker (two here).
    let calls = (0..32).map(|i| {
        let mut grpc = grpc.clone();
        async move { echo(&mut grpc, &format!("n{i}"), None).await.unwrap().text }
    });
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.ends_with("from h2c")));
    assert!(connections.load(Ordering::Relaxed) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_endpoints_answers_grpc_clients_with_a_grpc_status() {
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(
        plugins.path(),
        "[[pools]]\nname = \"grpc\"\nprotocol = \"h2c\"\nendpoints = [{ address = \"127.0.0.1:9\" }]\n",
    );
    let mut grpc = client(&proxy).await;
    let status = echo(&mut grpc, "hello", None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("switchyard"), "{status:?}");
}

/// A certificate for `localhost`, its key, and its CA file in `dir`.
fn certificate(dir: &Path) -> (String, String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = dir.join("endpoint-ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    (cert.pem(), key.serialize_pem(), ca.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reaches_an_endpoint_over_tls_with_alpn_h2_and_a_wrong_ca_is_refused() {
    let plugins = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificate(dir.path());
    let (server, _, _task) = grpc_server("tls", Some((cert, key))).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = certificate(other_dir.path()).2;
    let body = format!(
        "{}\n{}\n[[routes]]\npath_prefix = \"/test.Notes/Echo\"\npool = \"grpc\"\n\n[[routes]]\npool = \"wrong-ca\"\n",
        pool(
            server,
            &format!("protocol = \"h2\"\ntls = {{ server_name = \"localhost\", ca = \"{ca}\" }}")
        ),
        pool(
            server,
            &format!("protocol = \"h2\"\ntls = {{ server_name = \"localhost\", ca = \"{other_ca}\" }}")
        )
        .replace("name = \"grpc\"", "name = \"wrong-ca\""),
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let mut grpc = client(&proxy).await;
    let note = echo(&mut grpc, "hello", None).await.unwrap();
    assert_eq!(note.text, "hello from tls");
    // The other pool trusts another CA: the handshake fails, nothing is
    // sent, and the client is told the endpoint is unavailable.
    let status = count(&mut grpc, 1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_endpoints_over_tls_are_verified_or_not_as_configured() {
    let plugins = plugin_dir(&[("http-health", "http-health")]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificate(dir.path());
    // An HTTPS/1.1 endpoint: the test's hyper server behind rustls.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls_acceptor(&cert, &key, &[b"http/1.1"]);
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let proto = request
                            .headers()
                            .get("x-forwarded-proto")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(format!("secure {proto}")),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // The verified pool's health checks probe over TLS too.
    let body = format!(
        "[[pools]]\nname = \"verified\"\ntls = {{ ca = \"{ca}\", server_name = \"localhost\" }}\nendpoints = [{{ address = \"{addr}\" }}]\n\
         health = {{ plugin = \"http-health\", interval_ms = 100, timeout_ms = 100, rise = 1, config = {{ path = \"/healthz\" }} }}\n\n\
         [[pools]]\nname = \"unverified\"\ntls = {{ verify = false }}\nendpoints = [{{ address = \"{addr}\" }}]\n\n\
         [[pools]]\nname = \"system-roots\"\ntls = {{ server_name = \"localhost\" }}\nendpoints = [{{ address = \"{addr}\" }}]\n\n\
         [[routes]]\npath_prefix = \"/verified\"\npool = \"verified\"\n\n\
         [[routes]]\npath_prefix = \"/unverified\"\npool = \"unverified\"\n\n\
         [[routes]]\npool = \"system-roots\"\n"
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "a passing check over TLS", |pools| {
        pools["pools"][0]["endpoints"][0]["health"]["active"] == "healthy"
    })
    .await;
    let reply = client.get(&proxy.url("/verified")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "secure http"));
    let reply = client.get(&proxy.url("/unverified")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "secure http"));
    // Not signed by anything the system trusts: refused, and said so.
    let reply = client.get(&proxy.url("/other")).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("TLS"), "{}", reply.body);
}

/// A pool of a server that answers every call UNAVAILABLE and one that
/// works, with `recovery`: the policy is told the gRPC status (or, built
/// against contract 0.1.0, the 503 paired with it) and ejects the server.
async fn unavailable_endpoint_is_ejected_by(recovery_plugin: &str) {
    let plugins = plugin_dir(&[("policy", recovery_plugin)]);
    let (down, _, _down_task) = grpc_server("down", None).await;
    let (up, _, _up_task) = grpc_server("up", None).await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"grpc\"\nprotocol = \"h2c\"\nrecovery = {{ plugin = \"policy\" }}\n\
             outlier = {{ enabled = false }}\n\
             endpoints = [{{ address = \"{down}\" }}, {{ address = \"{up}\" }}]\n"
        ),
    );
    let mut grpc = client(&proxy).await;
    let mut unavailable = 0;
    for _ in 0..20 {
        match echo(&mut grpc, "hello", None).await {
            Ok(note) => assert_eq!(note.text, "hello from up"),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                assert_eq!(status.message(), "this server is down");
                unavailable += 1;
            }
        }
    }
    assert_eq!(
        unavailable, 1,
        "one call reached the down server, then it was ejected"
    );
    let pools = pools_now(&proxy, &HttpClient::default()).await;
    let down_health = &pools["pools"][0]["endpoints"][0]["health"];
    assert!(
        down_health["ejected_for_ms"].as_u64().is_some(),
        "{pools:#}"
    );
    assert_eq!(
        pools["pools"][0]["endpoints"][0]["load"]["failures"], 1,
        "{pools:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_policy_is_told_the_grpc_status_and_ejects_on_unavailable() {
    unavailable_endpoint_is_ejected_by("eject-on-grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_policy_built_against_contract_0_1_0_still_loads_and_sees_503() {
    unavailable_endpoint_is_ejected_by("eject-0-1-0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_speak_http2_to_an_h2c_pool() {
    let plugins = plugin_dir(&[("http-health", "http-health")]);
    let (server, connections, _task) = grpc_server("h2c", None).await;
    let keys = "protocol = \"h2c\"\nhealth = { plugin = \"http-health\", interval_ms = 100, timeout_ms = 100, rise = 1 }";
    let proxy = Switchyard::start(plugins.path(), &pool(server, keys));
    wait_for_pools(
        &proxy,
        &HttpClient::default(),
        "a passing HTTP/2 check",
        |pools| pools["pools"][0]["endpoints"][0]["health"]["active"] == "healthy",
    )
    .await;
    assert!(connections.load(Ordering::Relaxed) >= 1);
}
