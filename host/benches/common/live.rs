//! The real `switchyard` binary in front of upstream servers run in the
//! benchmark's own process, for the benchmarks that measure it live.

// Each benchmark uses only part of this.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// An upstream that answers its name until killed.
pub struct Upstream {
    pub addr: SocketAddr,
    pub kill: watch::Sender<bool>,
}

/// Starts an upstream on loopback answering `200` with `name` as the body.
pub async fn upstream(name: &'static str) -> Upstream {
    upstream_with_delay(name, std::time::Duration::ZERO).await
}

/// An upstream that takes `delay` over every answer: a backend that a
/// few concurrent requests keep busy.
pub async fn upstream_with_delay(name: &'static str, delay: std::time::Duration) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (kill, killed) = watch::channel(false);
    let mut stop = killed.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let mut stop = killed.clone();
            tokio::spawn(async move {
                let service = service_fn(
                    move |_request: http::Request<hyper::body::Incoming>| async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            name.as_bytes(),
                        ))))
                    },
                );
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                // A kill drops open connections too, as when a process dies.
                tokio::select! {
                    _ = connection => {}
                    _ = stop.changed() => {}
                }
            });
        }
    });
    Upstream { addr, kill }
}

/// The running binary; killed when dropped.
pub struct Proxy {
    child: Child,
    pub proxy: SocketAddr,
    pub control: SocketAddr,
    /// The config file it runs from.
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// The process id, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with 2 workers, plugins from `plugins`, and one pool
/// `web` over `upstreams` with the extra pool keys in `pool_keys`.
pub fn start_proxy(upstreams: &[Upstream], plugins: &Path, pool_keys: &str) -> Proxy {
    start_proxy_with(upstreams, plugins, pool_keys, "")
}

/// As `start_proxy`, with `tail` (routes, say) after the pool.
pub fn start_proxy_with(
    upstreams: &[Upstream],
    plugins: &Path,
    pool_keys: &str,
    tail: &str,
) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let endpoints: Vec<String> = upstreams
        .iter()
        .map(|u| format!("{{ address = \"{}\" }}", u.addr))
        .collect();
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\n[control]\nlisten = \"127.0.0.1:0\"\n\n\
         [plugins]\ndir = \"{}\"\n\n[[pools]]\nname = \"web\"\n{pool_keys}\nendpoints = [{}]\n{tail}\n",
        plugins.display(),
        endpoints.join(", ")
    );
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config).unwrap();
    let (child, proxy, control) = run_binary(&path);
    Proxy {
        proxy,
        control,
        child,
        config: path,
        _dir: dir,
    }
}

/// Runs the binary with the config file `path` (`RUST_LOG=error`); returns
/// the process and its proxy and control addresses, once it listens.
pub fn run_binary(path: &Path) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in `{line}`"))
            .parse()
            .unwrap()
    };
    (child, field("proxy="), field("control="))
}
