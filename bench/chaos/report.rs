//! The result of a soak, for a person or as one JSON line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::{Tally, CUT};

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    /// Time the clients sent requests.
    pub duration: Duration,
    pub kills: u64,
    pub swaps: u64,
    pub tally: Tally,
    /// `switchyard_retries_total` at the end; `None` when /metrics failed.
    pub retries: Option<u64>,
    /// The `switchyard_proxy_errors_total{cause=...}` lines of /metrics.
    pub proxy_errors: Vec<String>,
    /// The scratch folder, with the config, logs, /v1/pools and /metrics.
    pub dir: PathBuf,
    pub kept: bool,
}

impl Report {
    /// Requests whose body was cut after the head: once an endpoint dies
    /// mid-body, no proxy can complete the response.
    pub fn cuts(&self) -> u64 {
        self.tally.failures.get(CUT).copied().unwrap_or(0)
    }

    /// Delivered requests, in percent of all.
    pub fn delivered_share(&self) -> f64 {
        percent(self.tally.delivered, self.tally.requests)
    }

    /// Delivered requests, in percent of those not cut mid-body.
    pub fn delivered_share_without_cuts(&self) -> f64 {
        percent(self.tally.delivered, self.tally.requests - self.cuts())
    }

    pub fn human(&self) -> String {
        let tally = &self.tally;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "duration   {:.1} s (seed {})",
            self.duration.as_secs_f64(),
            self.seed
        );
        let _ = writeln!(out, "kills      {}", self.kills);
        let _ = writeln!(out, "swaps      {}", self.swaps);
        let _ = writeln!(out, "requests   {}", tally.requests);
        let _ = writeln!(out, "delivered  {}", tally.delivered);
        let _ = writeln!(out, "failed     {}", tally.requests - tally.delivered);
        let mut failures: Vec<(&String, &u64)> = tally.failures.iter().collect();
        failures.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (cause, count) in failures {
            let _ = writeln!(out, "  {count:>8}  {cause}");
        }
        let _ = writeln!(
            out,
            "delivered {:.4}% ({} of {})",
            self.delivered_share(),
            tally.delivered,
            tally.requests
        );
        let _ = writeln!(
            out,
            "delivered without mid-body cuts {:.4}% ({} of {})",
            self.delivered_share_without_cuts(),
            tally.delivered,
            tally.requests - self.cuts()
        );
        match self.retries {
            Some(retries) => {
                let _ = writeln!(out, "switchyard_retries_total {retries}");
            }
            None => {
                let _ = writeln!(out, "switchyard_retries_total unknown (no /metrics)");
            }
        }
        for line in &self.proxy_errors {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "dir {} ({})",
            self.dir.display(),
            if self.kept { "kept" } else { "removed" }
        );
        out
    }

    /// One JSON object; shares are in percent, like the human report and
    /// `--min-delivered`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "duration_s": self.duration.as_secs_f64(),
            "kills": self.kills,
            "swaps": self.swaps,
            "requests": self.tally.requests,
            "delivered": self.tally.delivered,
            "cuts": self.cuts(),
            "failures": self.tally.failures,
            "delivered_share": self.delivered_share(),
            "delivered_share_without_cuts": self.delivered_share_without_cuts(),
            "retries": self.retries,
        })
    }
}

/// `part` in percent of `whole`; none of nothing is 0 %, so an empty soak
/// never passes `--min-delivered`.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
