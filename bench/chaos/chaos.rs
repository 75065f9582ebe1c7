//! The faults: endpoint processes that a killer takes down and brings back, and a swapper that redeploys the balancer.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::process::Process;
use crate::soak::Span;

/// How long a starting endpoint may take to print `listening`: its bind
/// retries for 2 s, the rest is process start on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint processes, by index; `None` while an endpoint is down.
#[derive(Debug)]
pub struct Endpoints {
    exe: PathBuf,
    logs: PathBuf,
    ports: Vec<u16>,
    children: Mutex<Vec<Option<Process>>>,
}

impl Endpoints {
    /// Starts one endpoint per port, named `endpoint-1` and on, writing
    /// their stderr to `endpoint-K.log` in `logs`.
    pub async fn start(exe: PathBuf, logs: PathBuf, ports: Vec<u16>) -> anyhow::Result<Self> {
        let endpoints = Endpoints {
            exe,
            logs,
            children: Mutex::new((0..ports.len()).map(|_| None).collect()),
            ports,
        };
        for index in 0..endpoints.ports.len() {
            let process = endpoints.spawn(index).await?;
            endpoints.children.lock().unwrap()[index] = Some(process);
        }
        Ok(endpoints)
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    fn name(&self, index: usize) -> String {
        format!("endpoint-{}", index + 1)
    }

    /// Starts endpoint `index` and waits until it listens.
    async fn spawn(&self, index: usize) -> anyhow::Result<Process> {
        let name = self.name(index);
        let log_path = self.logs.join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let (process, stdout) = Process::spawn(
            Command::new(&self.exe)
                .arg("upstream")
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.ports[index]))
                .arg("--name")
                .arg(&name)
                .arg("--exit-with-stdin")
                // Held open by the soak: the endpoint exits when it closes.
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log),
        )
        .with_context(|| format!("cannot start {name} ({})", self.exe.display()))?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(START_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("listening ") => Ok(process),
            Ok(_) => {
                process.kill().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("{name} exited before listening; its log:\n{log}")
            }
            Err(_) => bail!("{name} did not listen within {START_TIMEOUT:?}"),
        }
    }

    fn up(&self) -> Vec<usize> {
        let children = self.children.lock().unwrap();
        (0..children.len())
            .filter(|&index| children[index].is_some())
            .collect()
    }

    /// Kills every endpoint and waits for each to exit.
    pub async fn kill_all(&self) {
        let children: Vec<Process> = self.children.lock().unwrap().drain(..).flatten().collect();
        for process in children {
            process.kill().await;
        }
    }
}

/// Until `deadline`, after `warmup`, every `every` ms SIGKILLs one endpoint
/// that is up, never the last one, and restarts it on its port after
/// `down` ms. Returns the number of kills.
pub async fn kill(
    endpoints: Arc<Endpoints>,
    warmup: Duration,
    every: Span,
    down: Span,
    seed: u64,
    deadline: Instant,
) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Dropped at the deadline: a restart still pending is cancelled, and
    // an endpoint it was starting is killed as its `Process` drops.
    let mut restarts = JoinSet::new();
    let mut kills = 0;
    let mut next = Instant::now() + warmup;
    loop {
        next += Duration::from_millis(every.draw(&mut rng));
        if next >= deadline {
            return kills;
        }
        tokio::time::sleep_until(next).await;
        while restarts.try_join_next().is_some() {}

        let up = endpoints.up();
        if up.len() < 2 {
            continue;
        }
        let index = up[rng.usize(..up.len())];
        let process = endpoints.children.lock().unwrap()[index].take();
        if let Some(process) = process {
            process.kill().await;
            kills += 1;
        }
        let down = Duration::from_millis(down.draw(&mut rng));
        let endpoints = Arc::clone(&endpoints);
        restarts.spawn(async move {
            tokio::time::sleep(down).await;
            // A failed start (the port taken by another process) is tried
            // again after the same pause, so the pool does not shrink for
            // the rest of the soak.
            loop {
                match endpoints.spawn(index).await {
                    Ok(process) => {
                        endpoints.children.lock().unwrap()[index] = Some(process);
                        return;
                    }
                    Err(error) => {
                        eprintln!("chaos: restart failed, trying again: {error:#}");
                        tokio::time::sleep(down).await;
                    }
                }
            }
        });
    }
}

/// The balancers the swapper cycles through, in order; the first is the
/// one the soak starts with.
pub const BALANCERS: [&str; 4] = ["round-robin", "least-request", "peak-ewma", "random"];

/// Until `deadline`, every `every` replaces `target` with the next of
/// `versions` (the first is already in place), the way a deploy does: write
/// a file beside it, then rename it over. Returns the number of swaps.
pub async fn swap(
    target: PathBuf,
    versions: Vec<Vec<u8>>,
    every: Duration,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let upload = upload_path(&target);
    let mut swaps = 0;
    let mut next = Instant::now();
    loop {
        next += every;
        if next >= deadline {
            return Ok(swaps);
        }
        tokio::time::sleep_until(next).await;
        let version = &versions[(swaps as usize + 1) % versions.len()];
        tokio::fs::write(&upload, version)
            .await
            .with_context(|| format!("cannot write {}", upload.display()))?;
        tokio::fs::rename(&upload, &target)
            .await
            .with_context(|| format!("cannot rename over {}", target.display()))?;
        swaps += 1;
    }
}

/// `.NAME.upload` beside `NAME.wasm`: hidden and not `.wasm`, so the
/// watcher never loads a half-written file.
fn upload_path(target: &Path) -> PathBuf {
    let stem = target
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{stem}.upload"))
}
