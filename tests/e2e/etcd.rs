//! A real etcd cluster on loopback ports, for the fleet's tests and
//! benchmarks: Debian's `etcd-server` (installed by `scripts/test`), its
//! members started, killed and started again by the caller. Only the
//! standard library, so the benchmarks can share it.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary: `SWITCHYARD_ETCD`, or Debian's.
fn etcd_binary() -> PathBuf {
    let binary = std::env::var_os("SWITCHYARD_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        binary.is_file(),
        "{} is missing: the fleet's tests need etcd (apt-get install etcd-server; scripts/test installs it)",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One member of the cluster.
pub struct Member {
    pub name: String,
    /// Its clients' port (TLS when the cluster has it).
    pub client_port: u16,
    /// A plain port beside it, for the harness's own probes.
    probe_port: u16,
    peer_port: u16,
    child: Option<Child>,
    tls: bool,
}

impl Member {
    /// `http://127.0.0.1:PORT`, or `https://`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
}

/// The files of a TLS etcd: its certificate and key (for `127.0.0.1`),
/// and the CA its clients' certificates must be signed by.
#[derive(Clone)]
pub struct EtcdTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// A running etcd cluster; stopped when dropped.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    pub members: Vec<Member>,
    tls: Option<EtcdTls>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until they have a leader.
    pub fn start(size: usize) -> EtcdCluster {
        EtcdCluster::start_with(size, None)
    }

    /// As `start`, serving clients over TLS (and asking for a client
    /// certificate) when `tls` is given.
    pub fn start_with(size: usize, tls: Option<EtcdTls>) -> EtcdCluster {
        let members: Vec<Member> = (0..size)
            .map(|index| Member {
                name: format!("m{index}"),
                client_port: free_port(),
                probe_port: free_port(),
                peer_port: free_port(),
                child: None,
                tls: tls.is_some(),
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir: tempfile::tempdir().unwrap(),
            members,
            tls,
        };
        for index in 0..size {
            cluster.start_member(index);
        }
        cluster.wait_for_leader(Duration::from_secs(30));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `index` (again, with its data, after a kill).
    pub fn start_member(&mut self, index: usize) {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[index].name);
        let tls = self.tls.clone();
        let member = &mut self.members[index];
        let client = member.url();
        let probe = format!("http://127.0.0.1:{}", member.probe_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new(etcd_binary());
        if let Some(tls) = &tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &format!("{client},{probe}")])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "switchyard-test"])
            // Fast elections: a killed leader is replaced within a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "error"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        member.child = Some(child);
    }

    /// Kills member `index` with SIGKILL.
    pub fn kill_member(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for index in 0..self.members.len() {
            self.kill_member(index);
        }
    }

    /// Starts every member that is not running, and waits for a leader.
    pub fn start_all(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                self.start_member(index);
            }
        }
        self.wait_for_leader(Duration::from_secs(30));
    }

    /// The members' client URLs, as `[cluster] etcd` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    /// `etcd = [...]` for a `[cluster]` table.
    pub fn toml_list(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The index of the leader, if a running member knows one.
    pub fn leader(&self) -> Option<usize> {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let Some(status) = post(member.probe_port, "/v3/maintenance/status", "{}") else {
                continue;
            };
            let leader = field(&status, "leader")?;
            for (index, candidate) in self.members.iter().enumerate() {
                if candidate.child.is_none() {
                    continue;
                }
                if let Some(status) = post(candidate.probe_port, "/v3/maintenance/status", "{}") {
                    if field(&status, "member_id").as_deref() == Some(leader.as_str()) {
                        return Some(index);
                    }
                }
            }
        }
        None
    }

    fn wait_for_leader(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let answered = self.members.iter().filter(|m| m.child.is_some()).all(|m| {
                get(m.probe_port, "/health").is_some_and(|body| body.contains("\"true\""))
            });
            if answered {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the etcd cluster has no leader after {within:?}");
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

impl EtcdCluster {
    /// Calls etcd's JSON gateway on the first member's plain port: the
    /// answer's body, if it was a 200.
    pub fn call(&self, path: &str, body: &str) -> Option<String> {
        post(self.members[0].probe_port, path, body)
    }
}

/// A string field of a JSON text, found by name (the first one).
fn field(json: &str, name: &str) -> Option<String> {
    let at = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = json[at..].find('"')?;
    Some(json[at..at + end].to_string())
}

fn exchange(port: u16, request: String) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn get(port: u16, path: &str) -> Option<String> {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

fn post(port: u16, path: &str, body: &str) -> Option<String> {
    exchange(
        port,
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}
