//! TLS termination with rustls: TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, session resumption by cache and tickets, and a certificate
//! chosen by the name the client asks for (SNI).
//!
//! A listener's certificates are read from PEM files into a
//! [`CertificateIndex`] behind an `ArcSwap`: a handshake reads the index
//! that stands at that moment, and a change to any of the files builds a
//! whole new one and swaps it in. Connections already open keep the
//! session they made; a file that does not load leaves the running
//! certificates serving and says why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{
    CertificateConfig, PoolConfig, TlsConfig, UpstreamProtocolConfig, UpstreamTlsConfig,
};
use crate::engine::{Alerts, Severity, UpstreamProtocol, UpstreamTls};

/// Sessions kept for resumption by session id (TLS 1.2), per listener.
const SESSION_CACHE: usize = 20_480;
/// Quiet time after a file event before the certificates are read again.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// A TLS listener's terminator: the rustls config every worker shares (so
/// a session made on one resumes on another) and the certificates it
/// serves.
#[derive(Debug)]
pub struct TlsTerminator {
    config: Arc<rustls::ServerConfig>,
    certificates: Arc<CertificateResolver>,
    sources: Vec<CertificateConfig>,
    /// The config key, `listeners[N].tls`, for messages.
    key: String,
}

impl TlsTerminator {
    /// Loads the certificates of `tls`; an error names the key and file.
    pub fn new(tls: &TlsConfig, key: String) -> anyhow::Result<Self> {
        let index = CertificateIndex::load(&tls.certificates, &key)?;
        let certificates = Arc::new(CertificateResolver {
            current: ArcSwap::from_pointee(index),
        });
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("the TLS provider lacks TLS 1.2 or 1.3")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .context("cannot make a session ticket key")?;
        Ok(TlsTerminator {
            config: Arc::new(config),
            certificates,
            sources: tls.certificates.clone(),
            key,
        })
    }

    /// The acceptor for a worker's connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// Reads every certificate file again and swaps the new set in; on an
    /// error the running set stays, and the error says which file and why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let index = CertificateIndex::load(&self.sources, &self.key)?;
        self.certificates.current.store(Arc::new(index));
        Ok(())
    }

    /// The names each certificate serves, in config order.
    pub fn names(&self) -> Vec<Vec<String>> {
        self.certificates.current.load().names.clone()
    }

    fn files(&self) -> Vec<PathBuf> {
        self.sources
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect()
    }
}

/// Watches the certificate and key files of every terminator and reloads a
/// terminator's set when one of its files changes (written in place,
/// replaced by a rename, or re-linked as a Kubernetes secret is). A failed
/// reload keeps the running set, and raises a P2 alert with the reason.
pub fn watch(
    terminators: Vec<Arc<TlsTerminator>>,
    alerts: Arc<Alerts>,
) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher as _;
    if terminators.is_empty() {
        return Ok(None);
    }
    let mut folders: Vec<PathBuf> = Vec::new();
    for terminator in &terminators {
        for file in terminator.files() {
            let folder = folder_of(&file);
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
    }
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            let _ = sender.send(path);
        }
    })
    .context("cannot start watching the certificate files")?;
    for folder in &folders {
        watcher
            .watch(folder, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", folder.display()))?;
    }
    tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let mut changed = vec![first];
            // Quiet for the debounce time: the write (or the rename of a
            // whole folder) is over.
            while let Ok(Some(path)) = tokio::time::timeout(RELOAD_DEBOUNCE, receiver.recv()).await
            {
                changed.push(path);
            }
            for terminator in &terminators {
                let files = terminator.files();
                // A path in a certificate's folder: the file itself, or a
                // link swapped over it (a Kubernetes secret's `..data`).
                let touched = changed.iter().any(|path| {
                    files.iter().any(|file| {
                        path == file || path.parent() == Some(folder_of(file).as_path())
                    })
                });
                if !touched {
                    continue;
                }
                match terminator.reload() {
                    Ok(()) => tracing::info!(
                        "{}: certificates read again; serving {:?}",
                        terminator.key,
                        terminator.names()
                    ),
                    Err(error) => alerts.raise(
                        Severity::P2,
                        "",
                        None,
                        format!("{error:#}; the running certificates keep serving"),
                    ),
                }
            }
        }
    });
    Ok(Some(watcher))
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Picks the certificate for a handshake from the index standing now.
#[derive(Debug)]
struct CertificateResolver {
    current: ArcSwap<CertificateIndex>,
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = self.current.load();
        Some(Arc::clone(index.find(hello.server_name())))
    }
}

/// A listener's certificates by the names they hold.
#[derive(Debug)]
struct CertificateIndex {
    /// Exact names, lower case.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first certificate: for clients without SNI or with an unknown name.
    default: Arc<CertifiedKey>,
    names: Vec<Vec<String>>,
}

impl CertificateIndex {
    fn load(sources: &[CertificateConfig], key: &str) -> anyhow::Result<Self> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut names = Vec::new();
        let mut default = None;
        for (index, source) in sources.iter().enumerate() {
            let key = format!("{key}.certificates[{index}]");
            let (certified, held) = load_certificate(source, &key)?;
            let certified = Arc::new(certified);
            for name in &held {
                let name = name.to_ascii_lowercase();
                // The first certificate to hold a name serves it.
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix.to_string())
                        .or_insert_with(|| Arc::clone(&certified)),
                    None => exact.entry(name).or_insert_with(|| Arc::clone(&certified)),
                };
            }
            default.get_or_insert_with(|| Arc::clone(&certified));
            names.push(held);
        }
        let default = default.with_context(|| format!("{key}.certificates: none are set"))?;
        Ok(CertificateIndex {
            exact,
            wildcard,
            default,
            names,
        })
    }

    fn find(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return found;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// Reads one certificate chain and its key; the names the leaf holds (its
/// DNS subject alternative names, or its common name when it has none).
fn load_certificate(
    source: &CertificateConfig,
    key: &str,
) -> anyhow::Result<(CertifiedKey, Vec<String>)> {
    let cert_file = source.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&source.cert)
        .and_then(|certs| certs.collect())
        .map_err(|error| anyhow::anyhow!("{key}.cert = {cert_file}: {error}"))?;
    if chain.is_empty() {
        anyhow::bail!("{key}.cert = {cert_file}: holds no PEM certificate");
    }
    let key_file = source.key.display();
    let private = PrivateKeyDer::from_pem_file(&source.key)
        .map_err(|error| anyhow::anyhow!("{key}.key = {key_file}: {error}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&private)
        .map_err(|error| anyhow::anyhow!("{key}.key = {key_file}: {error}"))?;
    let names = names_of(&chain[0])
        .map_err(|error| anyhow::anyhow!("{key}.cert = {cert_file}: {error}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|error| {
        anyhow::anyhow!("{key}.key = {key_file} is not the key of {cert_file}: {error}")
    })?;
    Ok((certified, names))
}

fn names_of(leaf: &CertificateDer<'_>) -> anyhow::Result<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|error| anyhow::anyhow!("the certificate does not parse: {error}"))?;
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            parsed
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_string),
        );
    }
    Ok(names)
}

/// How the proxy speaks to the endpoints of `pool` (at config key `key`):
/// its protocol, and the TLS client config, built once per pool, with the
/// roots read from `tls.ca` or the system's.
pub fn upstream_protocol(pool: &PoolConfig, key: &str) -> anyhow::Result<UpstreamProtocol> {
    let http2 = pool.protocol != UpstreamProtocolConfig::Http1;
    let tls = match (&pool.tls, pool.protocol) {
        (Some(tls), _) => Some(tls.clone()),
        // HTTP/2 over TLS with the defaults.
        (None, UpstreamProtocolConfig::H2) => Some(UpstreamTlsConfig {
            verify: true,
            ..UpstreamTlsConfig::default()
        }),
        (None, _) => None,
    };
    let Some(tls) = tls else {
        let key = if http2 {
            format!("h2c|{}", pool.name)
        } else {
            String::new()
        };
        return Ok(UpstreamProtocol {
            http2,
            tls: None,
            key,
        });
    };
    let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
    let config = client_config(&tls, alpn, key)?;
    let server_name = match &tls.server_name {
        Some(name) => Some(
            rustls_pki_types::ServerName::try_from(name.clone())
                .map_err(|error| anyhow::anyhow!("{key}.tls.server_name = `{name}`: {error}"))?,
        ),
        None => None,
    };
    Ok(UpstreamProtocol {
        http2,
        tls: Some(UpstreamTls {
            config,
            server_name,
        }),
        key: format!("{}|{}", if http2 { "h2" } else { "h1s" }, pool.name),
    })
}

/// The TLS handshake with the endpoint at `authority` (`host:port`) over
/// `stream`, which must agree on `alpn`. The name sent and verified is the
/// pool's `server_name`, or the endpoint's host.
pub async fn connect(
    stream: tokio::net::TcpStream,
    tls: &UpstreamTls,
    authority: &str,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => {
            let host = super::host_without_port(authority).to_string();
            rustls_pki_types::ServerName::try_from(host)
                .map_err(|e| format!("the endpoint's host: {e}"))?
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    if stream.get_ref().1.alpn_protocol() != Some(alpn) {
        return Err(format!(
            "the endpoint did not agree to {} (ALPN)",
            String::from_utf8_lossy(alpn)
        ));
    }
    Ok(stream)
}

/// The system's trusted roots, read once.
fn system_roots() -> anyhow::Result<Arc<rustls::RootCertStore>> {
    static ROOTS: std::sync::OnceLock<Result<Arc<rustls::RootCertStore>, String>> =
        std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no trusted roots found in the system's store ({:?})",
                    found.errors
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(|error| anyhow::anyhow!(error))
}

fn client_config(
    tls: &UpstreamTlsConfig,
    alpn: &[u8],
    key: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS provider lacks TLS 1.2 or 1.3")?;
    let mut config = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &tls.ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect())
                    .map_err(|error| {
                        anyhow::anyhow!("{key}.tls.ca = {}: {error}", path.display())
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    anyhow::bail!(
                        "{key}.tls.ca = {}: holds no usable certificate",
                        path.display()
                    );
                }
                Arc::new(roots)
            }
            None => system_roots().with_context(|| format!("{key}.tls: no `ca` is set"))?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// `verify = false`: any certificate is taken, though the handshake's
/// signatures are still checked (the peer holds the key of the certificate
/// it sent).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
