//! The end-to-end harness: builds the plugins once, starts real upstream
//! servers on loopback, starts the real `switchyard` binary, and talks to it
//! over real sockets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// The repository's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every plugin the tests use, bundled and hostile.
const PLUGIN_CRATES: [&str; 26] = [
    "plugins/round-robin",
    "plugins/least-request",
    "plugins/peak-ewma",
    "plugins/consistent-hash",
    "plugins/random",
    "plugins/http-health",
    "plugins/tcp-health",
    "plugins/retry-backoff",
    "plugins/circuit-breaker",
    "tests/plugins/looping-balancer",
    "tests/plugins/memory-hog",
    "tests/plugins/panicking-balancer",
    "tests/plugins/out-of-set",
    "tests/plugins/pin-first",
    "tests/plugins/pin-last",
    "tests/plugins/reject-config",
    "tests/plugins/always-healthy",
    "tests/plugins/wasi-sandbox",
    "tests/plugins/hostile-health",
    "tests/plugins/eject-on-grpc",
    "tests/plugins/eject-0-1-0",
    "tests/plugins/turns-0-1-1",
    "tests/plugins/by-priority",
    "tests/plugins/chatty-balancer",
    "tests/plugins/flaky-balancer",
    // Written outside the workspace, as a user would.
    "examples/canary-balancer",
];

/// The folder of built plugins, built once per test run with the same
/// `switchyard plugin build` a user runs.
pub fn built_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = workspace().join("target/e2e-plugins");
        let status = Command::new(BINARY)
            .args(["plugin", "build", "--out"])
            .arg(&out)
            .arg("--target-dir")
            .arg(workspace().join("target/wasm-plugins"))
            .args(PLUGIN_CRATES.iter().map(|c| workspace().join(c)))
            .stdout(Stdio::null())
            .status()
            .expect("run switchyard plugin build");
        assert!(status.success(), "switchyard plugin build failed");
        out
    })
}

/// The bundled plugins written in guest languages, and the tests' own:
/// their projects.
const GUEST_PROJECTS: [&str; 6] = [
    "examples/js/least-request",
    "examples/js/retry-backoff",
    "examples/python/round-robin",
    "examples/python/http-health",
    "tests/guest-plugins/js-turns",
    "tests/guest-plugins/py-turns",
];

/// The folder of the guest-language plugins, built once per test run with
/// `switchyard plugin build` (which installs the build tools into the tools
/// cache on first use).
pub fn built_guest_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = workspace().join("target/e2e-guest-plugins");
        let output = Command::new(BINARY)
            .args(["plugin", "build", "--out"])
            .arg(&out)
            .args(GUEST_PROJECTS.iter().map(|c| workspace().join(c)))
            .output()
            .expect("run switchyard plugin build");
        assert!(
            output.status.success(),
            "switchyard plugin build of the guest plugins failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// A command running pytest: the virtualenv `scripts/ensure-guest-tools`
/// keeps in the tools folder, made first when missing.
pub fn pytest() -> Command {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let output = Command::new(workspace().join("scripts/ensure-guest-tools"))
            .output()
            .expect("run scripts/ensure-guest-tools");
        assert!(
            output.status.success(),
            "scripts/ensure-guest-tools failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    let mut command = Command::new(tools.join("python-test/bin/python"));
    command.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    command
}

/// A `[[control.tokens]]` entry for `token`, known by its SHA-256.
pub fn token_entry(name: &str, role: &str, token: &str) -> String {
    use sha2::Digest as _;
    format!(
        "[[control.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{:x}\"\n",
        sha2::Sha256::digest(token.as_bytes())
    )
}

/// The Python that drives a real Chromium (Playwright, from
/// `scripts/ensure-browser-tools`, which installs what is missing).
pub fn browser_python() -> Command {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let output = Command::new(workspace().join("scripts/ensure-browser-tools"))
            .output()
            .expect("run scripts/ensure-browser-tools");
        assert!(
            output.status.success(),
            "scripts/ensure-browser-tools failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    Command::new(tools.join("python-browser/bin/python"))
}

/// `[plugins]` keys giving a test the compiled-plugin cache every test
/// shares: a Python plugin takes seconds to compile, and is compiled once.
pub fn shared_compile_cache() -> String {
    format!(
        "cache_dir = \"{}\"",
        workspace().join("target/e2e-plugin-cache").display()
    )
}

/// The bytes of a built plugin, Rust or guest language.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let file = format!("{name}.wasm");
    let guest = name.starts_with("js-") || name.starts_with("py-");
    let folder = if guest {
        built_guest_plugins()
    } else {
        built_plugins()
    };
    std::fs::read(folder.join(&file)).expect("built plugin")
}

/// A fresh plugin folder holding copies of `plugins`, as `(file stem, built plugin)`.
pub fn plugin_dir(plugins: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (stem, built) in plugins {
        std::fs::write(dir.path().join(format!("{stem}.wasm")), plugin_bytes(built)).unwrap();
    }
    dir
}

/// Replaces a plugin file the way a deploy does: write beside, then rename.
pub fn replace_plugin(dir: &Path, stem: &str, bytes: &[u8]) {
    let temporary = dir.join(format!(".{stem}.upload"));
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, dir.join(format!("{stem}.wasm"))).unwrap();
}

/// Size of the body an upstream sends for `/download`.
pub const BIG_BODY: usize = 4 << 20;

/// How a test upstream behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
}

/// How many requests an upstream is answering at once.
#[derive(Debug, Default)]
pub struct Load {
    pub now: AtomicU64,
    pub peak: AtomicU64,
}

/// Counts a request as answered when dropped, however it ends.
struct Answered(Arc<Load>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request as an upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The target as received.
    pub target: String,
    /// The body, read for paths under `/record` (empty elsewhere).
    pub body: String,
}

/// A real HTTP/1.1 server on loopback that answers with its name.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    pub last_headers: Arc<Mutex<Option<http::HeaderMap>>>,
    /// The last request's method and target, and its body under `/record`.
    pub last_request: Arc<Mutex<Option<Seen>>>,
    /// Requests being answered now, and the most at once so far.
    pub load: Arc<Load>,
    behaviour: Arc<Mutex<Behaviour>>,
    kill: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Upstream::with(
            name,
            Behaviour {
                status: 200,
                delay: Duration::ZERO,
            },
        )
        .await
    }

    pub async fn with(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve(listener, name, behaviour)
    }

    /// A server on `addr` (another loopback address, `127.0.0.2` and
    /// on: Linux routes all of `127.0.0.0/8` to loopback), so servers
    /// that differ only in address can share a port, as a DNS name's do.
    pub async fn start_at(name: &str, addr: SocketAddr, delay: Duration) -> Upstream {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
        Upstream::serve(listener, name, Behaviour { status: 200, delay })
    }

    /// A new server on the address of this one, which was killed: a server
    /// process coming back on its port.
    pub async fn restarted(&self, name: &str) -> Upstream {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("cannot bind {} again: {error}", self.addr),
            }
        };
        let behaviour = self.behaviour.lock().unwrap().clone();
        Upstream::serve(listener, name, behaviour)
    }

    fn serve(listener: TcpListener, name: &str, behaviour: Behaviour) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let accepted_count = Arc::new(AtomicU64::new(0));
        let last_headers = Arc::new(Mutex::new(None));
        let last_request = Arc::new(Mutex::new(None));
        let load = Arc::new(Load::default());
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (kill, killed) = tokio::sync::watch::channel(false);
        let task = {
            let (name, hits, last_headers, behaviour, load) = (
                name.to_string(),
                hits.clone(),
                last_headers.clone(),
                behaviour.clone(),
                load.clone(),
            );
            let last_request = last_request.clone();
            let mut stop = killed.clone();
            let accepted_count = accepted_count.clone();
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = stop.changed() => break,
                    };
                    let Ok((stream, _)) = accepted else {
                        continue;
                    };
                    accepted_count.fetch_add(1, Ordering::Relaxed);
                    let mut stop = killed.clone();
                    let (name, hits, last_headers, behaviour, load) = (
                        name.clone(),
                        hits.clone(),
                        last_headers.clone(),
                        behaviour.clone(),
                        load.clone(),
                    );
                    let last_request = last_request.clone();
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request: http::Request<hyper::body::Incoming>| {
                                let (name, hits, last_headers, behaviour, load) = (
                                    name.clone(),
                                    hits.clone(),
                                    last_headers.clone(),
                                    behaviour.clone(),
                                    load.clone(),
                                );
                                let last_request = last_request.clone();
                                async move {
                                    hits.fetch_add(1, Ordering::Relaxed);
                                    let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
                                    load.peak.fetch_max(now, Ordering::SeqCst);
                                    let _answered = Answered(load);
                                    *last_headers.lock().unwrap() = Some(request.headers().clone());
                                    let Behaviour { status, delay } =
                                        behaviour.lock().unwrap().clone();
                                    if !delay.is_zero() {
                                        tokio::time::sleep(delay).await;
                                    }
                                    // The target as received, so a test sees rewrites.
                                    let target = request.uri().to_string();
                                    let method = request.method().to_string();
                                    let mut recorded = String::new();
                                    // `/upload` answers with the size of the body it read;
                                    // `/download` with BIG_BODY bytes; anything else with the name
                                    // (a path under `/record` after reading its body).
                                    let body = match request.uri().path() {
                                        "/upload" => {
                                            let body = request
                                                .into_body()
                                                .collect()
                                                .await
                                                .map(|b| b.to_bytes().len())
                                                .unwrap_or(0);
                                            Bytes::from(format!("received {body}"))
                                        }
                                        "/download" => Bytes::from(vec![b'x'; BIG_BODY]),
                                        path if path.starts_with("/record") => {
                                            let body = request
                                                .into_body()
                                                .collect()
                                                .await
                                                .map(|b| b.to_bytes())
                                                .unwrap_or_default();
                                            recorded = String::from_utf8_lossy(&body).into_owned();
                                            Bytes::from(name.clone())
                                        }
                                        _ => Bytes::from(name.clone()),
                                    };
                                    *last_request.lock().unwrap() = Some(Seen {
                                        method,
                                        target: target.clone(),
                                        body: recorded,
                                    });
                                    Ok::<_, Infallible>(
                                        http::Response::builder()
                                            .status(status)
                                            .header("x-upstream", name.as_str())
                                            .header("x-upstream-target", target)
                                            .body(Full::new(body))
                                            .unwrap(),
                                    )
                                }
                            });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        // A kill drops the connection, in-flight requests and all.
                        tokio::select! {
                            _ = connection => {}
                            _ = stop.changed() => {}
                        }
                    });
                }
            })
        };
        Upstream {
            addr,
            hits,
            accepted: accepted_count,
            last_headers,
            last_request,
            load,
            behaviour,
            kill,
            task,
        }
    }

    /// Stops the upstream at once: the listener closes and every open
    /// connection is dropped, as when a server process dies.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    /// Changes how the upstream answers from now on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// `{ address = "...", weight = N }`
    pub fn endpoint(&self, weight: u32) -> String {
        format!("{{ address = \"{}\", weight = {weight} }}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
        self.task.abort();
    }
}

/// The real binary, started with a config file; killed when dropped.
pub struct Switchyard {
    pub proxy: SocketAddr,
    pub control: SocketAddr,
    /// The addresses of `[[listeners]]`, in config order.
    pub listeners: Vec<SocketAddr>,
    child: Child,
    _config_dir: tempfile::TempDir,
    /// The config file the process runs from.
    pub config: PathBuf,
    /// Its first lines (`[proxy]`, `[control]`, `[plugins]`), before the body.
    config_head: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Switchyard {
    /// Starts `switchyard run` with `[proxy]`, `[control]` and
    /// `[plugins] dir` filled in (port 0) and `body` appended.
    pub fn start(plugins: &Path, body: &str) -> Switchyard {
        Switchyard::start_with(plugins, "", body)
    }

    pub fn try_start(plugins: &Path, body: &str) -> Result<Switchyard, String> {
        Switchyard::try_start_with(plugins, "", body)
    }

    /// As [`Switchyard::start`], with `proxy_keys` (`key = value` lines)
    /// added to the `[proxy]` table.
    pub fn start_with(plugins: &Path, proxy_keys: &str, body: &str) -> Switchyard {
        Switchyard::try_start_with(plugins, proxy_keys, body)
            .unwrap_or_else(|stderr| panic!("switchyard did not start:\n{stderr}"))
    }

    pub fn try_start_with(
        plugins: &Path,
        proxy_keys: &str,
        body: &str,
    ) -> Result<Switchyard, String> {
        Switchyard::try_start_full(plugins, proxy_keys, "", "", body)
    }

    /// As [`Switchyard::try_start_with`], with `control_keys` and
    /// `plugin_keys` added to the `[control]` and `[plugins]` tables.
    pub fn try_start_full(
        plugins: &Path,
        proxy_keys: &str,
        control_keys: &str,
        plugin_keys: &str,
        body: &str,
    ) -> Result<Switchyard, String> {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("switchyard.toml");
        // Two workers unless the test says how many.
        let workers = if proxy_keys.contains("workers =") {
            ""
        } else {
            "workers = 2\n"
        };
        let config_head = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n{workers}request_timeout_ms = 2000\nshutdown_grace_ms = 5000\n{proxy_keys}\n\n\
             [control]\nlisten = \"127.0.0.1:0\"\n{control_keys}\n\n\
             [plugins]\ndir = \"{}\"\n{plugin_keys}\n\n",
            plugins.display()
        );
        std::fs::write(&config, format!("{config_head}{body}\n")).unwrap();
        let Spawned {
            child,
            proxy,
            control,
            listeners,
            stderr,
        } = spawn(&config)?;
        Ok(Switchyard {
            proxy,
            control,
            listeners,
            child,
            _config_dir: config_dir,
            config,
            config_head,
            stderr,
        })
    }

    /// Kills the process with SIGKILL, as a crash does, and starts it again
    /// from the same config file.
    pub fn crash_and_restart(&mut self) -> Result<(), String> {
        self.crash();
        let spawned = spawn(&self.config)?;
        self.child = spawned.child;
        self.proxy = spawned.proxy;
        self.control = spawned.control;
        self.listeners = spawned.listeners;
        self.stderr = spawned.stderr;
        Ok(())
    }

    /// Kills the process with SIGKILL, as a crash does.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn control_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.control)
    }

    /// `GET /v1/plugins`, as a map by plugin name.
    pub async fn plugins(&self, client: &HttpClient) -> HashMap<String, serde_json::Value> {
        let response = client.get(&self.control_url("/v1/plugins")).await;
        let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        json["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
            .collect()
    }

    /// Waits (up to 30 s, for a loaded machine) until `/v1/plugins` entry `name` satisfies `check`.
    pub async fn wait_for_plugin(
        &self,
        client: &HttpClient,
        name: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let plugins = self.plugins(client).await;
            if let Some(plugin) = plugins.get(name) {
                if check(plugin) {
                    return plugin.clone();
                }
                if Instant::now() > deadline {
                    panic!(
                        "plugin `{name}` never reached: {what}; last: {plugin:#}\n{}",
                        self.log_tail()
                    );
                }
            } else if Instant::now() > deadline {
                panic!("plugin `{name}` never appeared");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        let log = self.stderr.lock().unwrap();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "switchyard log (tail):\n{}",
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    /// Writes the config file again with `body` after the same head, as an
    /// editor saving it does (written beside, then renamed over).
    pub fn rewrite_config(&self, body: &str) {
        let temporary = self.config.with_extension("toml.new");
        std::fs::write(&temporary, format!("{}{body}\n", self.config_head)).unwrap();
        std::fs::rename(&temporary, &self.config).unwrap();
    }

    /// Sends SIGHUP: reload the config file.
    pub fn hang_up(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `switchyard run` on `config`; its process, its addresses and
/// its log, or the log if it did not start.
#[allow(clippy::type_complexity)]
fn spawn(config: &Path) -> Result<Spawned, String> {
    let mut child = Command::new(BINARY)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard");
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = {
        let stderr = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = stderr.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        })
    };
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let read = stdout.read_line(&mut line).unwrap_or(0);
    if read == 0 {
        let _ = child.wait();
        // The pipe closed with the process: the reader has all of it once
        // it ends, however busy the machine.
        let _ = reader.join();
        return Err(stderr.lock().unwrap().clone());
    }
    // Keep draining stdout so the child never blocks on it.
    std::thread::spawn(move || for _ in stdout.lines() {});
    let field = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in `{line}`"))
            .parse()
            .unwrap()
    };
    // `[[listeners]]`, in config order: ` http=ADDR` or ` https=ADDR`.
    let listeners = line
        .split_whitespace()
        .filter_map(|part| {
            part.strip_prefix("https=")
                .or_else(|| part.strip_prefix("http="))
        })
        .map(|address| address.parse().unwrap())
        .collect();
    Ok(Spawned {
        child,
        proxy: field("proxy="),
        control: field("control="),
        listeners,
        stderr,
    })
}

/// A started process and what it printed of itself.
struct Spawned {
    child: Child,
    proxy: SocketAddr,
    control: SocketAddr,
    listeners: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl HttpClient {
    pub async fn get(&self, url: &str) -> Reply {
        self.get_with(url, &[]).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.try_get_with(url, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// POSTs `body` with a streaming client body of its own.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Reply {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(
                http::Request::post(url)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn try_get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut request = http::Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Empty::new()).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Sends `count` GETs with `concurrency` in flight; returns how many each
    /// upstream answered and the failures.
    pub async fn spread(
        &self,
        url: &str,
        count: usize,
        concurrency: usize,
    ) -> (HashMap<String, usize>, Vec<String>) {
        let next = Arc::new(AtomicU64::new(0));
        self.spread_while(url, concurrency, move || {
            next.fetch_add(1, Ordering::Relaxed) < count as u64
        })
        .await
    }

    /// Sends GETs with `concurrency` in flight for as long as `go` says
    /// (asked before each); returns how many each upstream answered and
    /// the failures.
    pub async fn spread_while(
        &self,
        url: &str,
        concurrency: usize,
        go: impl Fn() -> bool + Clone + Send + 'static,
    ) -> (HashMap<String, usize>, Vec<String>) {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, go) = (self.clone(), url.to_string(), go.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = HashMap::new();
                let mut failures = Vec::new();
                while go() {
                    match client.try_get_with(&url, &[]).await {
                        Ok(reply) if reply.status == 200 => {
                            *seen.entry(reply.upstream().to_string()).or_insert(0) += 1
                        }
                        Ok(reply) => {
                            failures.push(format!("{} {}", reply.status, reply.body.trim()))
                        }
                        Err(error) => failures.push(error),
                    }
                }
                (seen, failures)
            }));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut failures = Vec::new();
        for task in tasks {
            let (part, failed) = task.await.unwrap();
            for (name, n) in part {
                *seen.entry(name).or_insert(0) += n;
            }
            failures.extend(failed);
        }
        (seen, failures)
    }
}

/// One keep-alive HTTP/1.1 connection, written and read by hand so a test
/// controls exactly which requests share it.
pub struct RawClient {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    /// Sends a body-less request and reads the whole response (no body
    /// after HEAD; otherwise `content-length` bytes). Returns the head.
    pub async fn exchange(&mut self, method: &str, path: &str) -> String {
        use tokio::io::AsyncWriteExt;
        let request = format!("{method} {path} HTTP/1.1\r\nhost: raw.test\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let length = if method == "HEAD" {
            0
        } else {
            head.lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a content-length")
        };
        while self.buffer.len() < head_end + length {
            self.fill().await;
        }
        self.buffer.drain(..head_end + length);
        head
    }

    async fn fill(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-response");
        self.buffer.extend_from_slice(&chunk[..n]);
    }
}

/// `GET /v1/pools`.
pub async fn pools_now(proxy: &Switchyard, client: &HttpClient) -> serde_json::Value {
    serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap()
}

/// Waits (up to 30 s, for a loaded machine) until `/v1/pools` satisfies
/// `check`.
pub async fn wait_for_pools(
    proxy: &Switchyard,
    client: &HttpClient,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pools = pools_now(proxy, client).await;
        if check(&pools) {
            return pools;
        }
        assert!(
            Instant::now() < deadline,
            "never reached: {what}; last: {pools:#}\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric line `name` (without labels).
pub async fn metric(proxy: &Switchyard, name: &str) -> u64 {
    let text = HttpClient::default()
        .get(&proxy.control_url("/metrics"))
        .await
        .body;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
}

/// One request with these headers and body; the reply read whole.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A script of `tests/browser/` driving Chromium, spoken to line by line.
pub struct Script {
    child: std::process::Child,
    said: BufReader<std::process::ChildStdout>,
}

impl Script {
    pub fn start(name: &str, args: &[String]) -> Script {
        let mut child = browser_python()
            .arg(workspace().join("tests/browser").join(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the browser script");
        let said = BufReader::new(child.stdout.take().unwrap());
        Script { child, said }
    }

    /// Waits for the script to say `word`; `failed` says what it means if
    /// it does not.
    pub fn expect(&mut self, word: &str, failed: &str) {
        let mut line = String::new();
        let read = tokio::task::block_in_place(|| self.said.read_line(&mut line));
        assert!(
            read.is_ok() && line.trim() == word,
            "{failed}: {line}{}",
            self.stderr()
        );
    }

    /// Tells the script `word`, on a line.
    pub fn tell(&mut self, word: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{word}").unwrap();
        stdin.flush().unwrap();
    }

    /// Tells the script `word`, and waits for it to end well: what it said
    /// last. `context` goes with a failure.
    pub fn finish(&mut self, word: &str, context: &str) -> String {
        self.tell(word);
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let status = tokio::task::block_in_place(|| {
            let _ = std::io::Read::read_to_string(&mut self.said, &mut rest);
            self.child.wait()
        })
        .unwrap();
        assert!(status.success(), "{rest}{}\n{context}", self.stderr());
        rest
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }
}

/// A server-sent event stream read as a client does.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    pub async fn open(proxy: &Switchyard, last_event_id: Option<u64>) -> EventStream {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = http::Request::get(proxy.control_url("/v1/events"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event: (id, kind, data).
    pub async fn next(&mut self) -> (u64, String, serde_json::Value) {
        use http_body_util::BodyExt as _;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(str::trim))
                        .map(str::to_string)
                };
                // Keep-alive comments carry no event.
                let (Some(id), Some(kind), Some(data)) =
                    (field("id:"), field("event:"), field("data:"))
                else {
                    continue;
                };
                return (
                    id.parse().unwrap(),
                    kind,
                    serde_json::from_str(&data).unwrap(),
                );
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The next event of `kind` whose data satisfies `check`.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> (u64, serde_json::Value) {
        loop {
            let (id, got, data) = self.next().await;
            if got == kind && check(&data["data"]) {
                return (id, data);
            }
        }
    }
}
