//! Child processes that never outlive the soak: killed and reaped on every path out, including errors and signals.

use std::time::Duration;

use tokio::process::{Child, ChildStdout, Command};

/// How long a drop waits for a killed child to be reaped. SIGKILL takes a
/// few milliseconds; the bound only keeps a stuck kernel from hanging us.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// A started child. Dropping it sends SIGKILL and waits for the exit, so
/// no process and no zombie is left behind even when the future that owns
/// it is cancelled mid-await.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `command`, which must pipe stdout.
    pub fn spawn(command: &mut Command) -> std::io::Result<(Self, ChildStdout)> {
        let mut child = command.kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().expect("the caller pipes stdout");
        Ok((Process { child }, stdout))
    }

    /// Kills the child and waits for it without blocking the runtime.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Resolves when the child exits on its own, with how it exited.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("cannot wait for it: {error}"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.child.start_kill();
        // A blocking wait is fine here: it lasts the few milliseconds the
        // kernel takes to tear the process down.
        let started = std::time::Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && started.elapsed() < REAP_TIMEOUT {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
