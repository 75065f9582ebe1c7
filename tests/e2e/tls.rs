//! TLS termination: certificates made at test time (ECDSA P-256, each name
//! signed by a CA of its own, so a client that trusts one CA tells which
//! certificate it was served), curl as a user would run it, and a rustls
//! client for what curl cannot show (resumption, a swap under load).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::ServerName;

use crate::support::*;

/// A certificate authority of the test's own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes a certificate for `names` and its key as `stem.pem` and
    /// `stem.key` in `dir`.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        write_atomically(&dir.join(format!("{stem}.pem")), cert.pem().as_bytes());
        write_atomically(
            &dir.join(format!("{stem}.key")),
            key.serialize_pem().as_bytes(),
        );
    }

    /// The CA's certificate as a PEM file, for curl's `--cacert`.
    fn write(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).unwrap();
    }
}

/// Writes a file as deploy tools do: a temporary file renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A rustls client trusting `cas`, offering `alpn`, with its own session
/// store.
fn client(cas: &[&Ca], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.issuer.der().clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What one request over a new TLS connection got.
#[derive(Debug)]
struct Fetched {
    body: String,
    resumed: bool,
    version: rustls::ProtocolVersion,
}

/// `GET /` to `addr` as `name`, over a new connection.
async fn fetch(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Fetched, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server = ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let session = tls.get_ref().1;
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let version = session.protocol_version().unwrap();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let request = http::Request::get("/")
        .header("host", name)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await
    }
    .map_err(|e| e.to_string())?;
    assert_eq!(response.version() == http::Version::HTTP_2, h2);
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Fetched {
        body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        resumed,
        version,
    })
}

/// Runs curl; its exit status and standard output.
fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (scripts/test installs it)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A proxy with a plain listener and a TLS listener serving the
/// certificates `stems` in `dir` (in that order).
fn start_tls(plugins: &Path, dir: &Path, stems: &[&str], upstream: &Upstream) -> Switchyard {
    let certificates = stems
        .iter()
        .map(|stem| {
            format!(
                "{{ cert = \"{0}/{stem}.pem\", key = \"{0}/{stem}.key\" }}",
                dir.display()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Switchyard::start(
        plugins,
        &format!(
            "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntls = {{ certificates = [{certificates}] }}\n\n\
             [[pools]]\nname = \"web\"\nendpoints = [{}]\n",
            upstream.endpoint(1)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_https_gets_the_certificate_its_name_asks_for() {
    let plugins = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (Ca::new("CA A"), Ca::new("CA B"));
    ca_a.issue(certs.path(), "a", &["a.test"]);
    ca_b.issue(certs.path(), "b", &["*.b.test", "b.test"]);
    ca_a.write(&certs.path().join("ca-a.pem"));
    ca_b.write(&certs.path().join("ca-b.pem"));
    let upstream = Upstream::start("up").await;
    let proxy = start_tls(plugins.path(), certs.path(), &["a", "b"], &upstream);
    let port = proxy.listeners[0].port();
    let ca = |name: &str| certs.path().join(name).display().to_string();
    let get = |host: &str, ca: &str, extra: &[&str]| {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}/");
        let mut args = vec![
            "--resolve",
            &resolve,
            "--cacert",
            ca,
            "-w",
            " %{http_version}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    // Each name gets its own certificate: only its own CA accepts it.
    assert_eq!(get("a.test", &ca("ca-a.pem"), &[]), (true, "up 2".into()));
    assert_eq!(get("x.b.test", &ca("ca-b.pem"), &[]), (true, "up 2".into()));
    assert_eq!(get("b.test", &ca("ca-b.pem"), &[]), (true, "up 2".into()));
    assert!(!get("x.b.test", &ca("ca-a.pem"), &[]).0);
    assert!(!get("a.test", &ca("ca-b.pem"), &[]).0);
    // ALPN offers both protocols; HTTP/1.1 goes by the fast path.
    let fast_before = metric(&proxy, "switchyard_fast_path_requests_total").await;
    assert_eq!(
        get("a.test", &ca("ca-a.pem"), &["--http1.1"]),
        (true, "up 1.1".into())
    );
    assert_eq!(
        metric(&proxy, "switchyard_fast_path_requests_total").await,
        fast_before + 1
    );
    // TLS 1.2 is accepted; 1.1 and below are not.
    assert!(get("a.test", &ca("ca-a.pem"), &["--tls-max", "1.2"]).0);
    assert!(
        !get(
            "a.test",
            &ca("ca-a.pem"),
            &["--tls-max", "1.1", "--tlsv1.0"]
        )
        .0
    );
    // The endpoint is told the client came over HTTPS.
    let headers = upstream.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers.get("x-forwarded-proto").unwrap(), "https");
    // The plain listener still serves, and says http.
    let (ok, body) = curl(&[&proxy.url("/")]);
    assert!(ok);
    assert_eq!(body, "up");
    let headers = upstream.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers.get("x-forwarded-proto").unwrap(), "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_connections() {
    let plugins = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    ca.issue(certs.path(), "a", &["a.test"]);
    let upstream = Upstream::start("up").await;
    let proxy = start_tls(plugins.path(), certs.path(), &["a"], &upstream);
    let addr = proxy.listeners[0];
    for (alpn, version) in [
        (&[&b"http/1.1"[..]][..], rustls::ProtocolVersion::TLSv1_3),
        (
            &[&b"h2"[..], &b"http/1.1"[..]][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let config = client(&[&ca], alpn);
        let first = fetch(addr, "a.test", Arc::clone(&config)).await.unwrap();
        assert!(!first.resumed);
        assert_eq!(first.version, version);
        let second = fetch(addr, "a.test", config).await.unwrap();
        assert!(second.resumed, "the second connection resumes the session");
        assert_eq!(second.body, "up");
    }
    let resumed = "switchyard_tls_handshakes_total{result=\"resumed\"}";
    assert_eq!(metric(&proxy, resumed).await, 2);
    assert_eq!(
        metric(&proxy, "switchyard_tls_handshakes_total{result=\"full\"}").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_swap_under_load_without_a_failed_request_and_a_bad_file_changes_nothing() {
    let plugins = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("old"), Ca::new("new"));
    old_ca.issue(certs.path(), "a", &["a.test"]);
    let upstream = Upstream::start("up").await;
    let proxy = start_tls(plugins.path(), certs.path(), &["a"], &upstream);
    let addr = proxy.listeners[0];

    // Clients that trust both authorities, each request on a new
    // connection, until told to stop.
    let both = client(&[&old_ca, &new_ca], &[b"http/1.1"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (both, stop, served, failed) =
            (both.clone(), stop.clone(), served.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match fetch(addr, "a.test", both.clone()).await {
                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        errors.push(error);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    new_ca.issue(certs.path(), "a", &["a.test"]);
    // New connections get the new certificate once the files are read.
    let only_new = client(&[&new_ca], &[b"http/1.1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetch(addr, "a.test", only_new.clone()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in load {
        errors.extend(task.await.unwrap());
    }
    assert!(served.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );

    // A key that is not a key: the running certificate keeps serving, and
    // an alert says which file and why.
    write_atomically(&certs.path().join("a.key"), b"not a key\n");
    let client_http = HttpClient::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let alerts = loop {
        let alerts = client_http.get(&proxy.control_url("/v1/alerts")).await.body;
        if alerts.contains("listeners[0].tls.certificates[0].key") {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "no alert for the bad key: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(alerts.contains("a.key"), "{alerts}");
    assert!(fetch(addr, "a.test", only_new).await.is_ok());
}

#[tokio::test]
async fn a_missing_certificate_file_stops_the_start_and_names_the_key() {
    let plugins = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("up").await;
    let error = Switchyard::try_start(
        plugins.path(),
        &format!(
            "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntls = {{ certificates = [{{ cert = \"{0}/none.pem\", key = \"{0}/none.key\" }}] }}\n\n\
             [[pools]]\nname = \"web\"\nendpoints = [{1}]\n",
            certs.path().display(),
            upstream.endpoint(1)
        ),
    )
    .err()
    .expect("no start without the certificate");
    assert!(
        error.contains("listeners[0].tls.certificates[0].cert") && error.contains("none.pem"),
        "{error}"
    );
}
