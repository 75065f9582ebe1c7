//! A plugin's log lines, bounded: each cut at `plugins.log_line_bytes`, and
//! each plugin's lines limited to `plugins.log_lines_per_second`, the excess
//! counted and summarised.
//!
//! The rate is a token bucket per plugin (every instance of it, on every
//! thread, draws from one bucket) kept in one atomic as the Generic Cell
//! Rate Algorithm does (ATM Forum, Traffic Management 4.0; the "virtual
//! scheduling" form): the bucket is the theoretical arrival time of the
//! next line, and a line is let through while that time is at most a
//! second's worth of lines ahead of now. A quiet plugin may thus write a
//! burst of `log_lines_per_second` lines, then one every `1 / rate` s.
//! A line over the rate is dropped and counted; at most once a second, at
//! the next line the plugin tries to write (dropped or not), one summary
//! line says how many were dropped since the last summary. Nothing waits:
//! every step is a relaxed atomic operation, and a compare-exchange that
//! loses to another thread tries again with its value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

const SECOND_NS: u64 = 1_000_000_000;

/// How a plugin's lines are bounded, from `[plugins]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes of a line kept; the rest is cut.
    pub line_bytes: usize,
    /// Lines a second, every instance of the plugin together.
    pub lines_per_second: u32,
}

/// What happened to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutcome {
    /// Written whole.
    Written,
    /// Written cut at `line_bytes`.
    Cut,
    /// Over the rate: counted, not written.
    Dropped,
}

/// The log lines of one plugin so far, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Written whole.
    pub written: u64,
    /// Written cut.
    pub cut: u64,
    /// Dropped over the rate.
    pub dropped: u64,
}

/// One plugin's log: its limits, its bucket and its counts.
#[derive(Debug)]
pub struct PluginLog {
    plugin: Arc<str>,
    limits: LogLimits,
    /// Time between lines at the steady rate, in ns.
    interval_ns: u64,
    /// How far ahead of now the bucket may run: a burst of a second's lines.
    burst_ns: u64,
    /// When the next line is due at the steady rate, in ns since `base()`.
    due_ns: AtomicU64,
    /// Lines dropped and not yet summarised.
    unsummarised: AtomicU64,
    /// When the last summary was written, in ns since `base()` (0: never).
    summarised_at_ns: AtomicU64,
    written: AtomicU64,
    cut: AtomicU64,
    dropped: AtomicU64,
}

/// Process-wide origin of the log clock.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    // Never 0, which means "never" for `summarised_at_ns`.
    base().elapsed().as_nanos() as u64 + 1
}

/// `line` cut to at most `max` bytes on a character boundary, or `None` if
/// it fits.
pub fn cut(line: &str, max: usize) -> Option<&str> {
    if line.len() <= max {
        return None;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(&line[..end])
}

impl PluginLog {
    /// An empty log for `plugin` (its bucket full).
    pub fn new(plugin: Arc<str>, limits: LogLimits) -> Self {
        let rate = u64::from(limits.lines_per_second.max(1));
        let interval_ns = SECOND_NS / rate;
        PluginLog {
            plugin,
            limits,
            interval_ns,
            burst_ns: interval_ns * (rate - 1),
            due_ns: AtomicU64::new(0),
            unsummarised: AtomicU64::new(0),
            summarised_at_ns: AtomicU64::new(0),
            written: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    /// The lines so far, by outcome.
    pub fn counts(&self) -> LogCounts {
        LogCounts {
            written: self.written.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Writes `message` at `level` to the host's log, bounded.
    pub fn write(&self, level: tracing::Level, message: &str) -> LogOutcome {
        self.write_at(now_ns(), message, |line| emit(level, &self.plugin, line))
    }

    /// [`PluginLog::write`] at `now` (ns since `base()`), handing what is
    /// written, summaries included, to `emit`.
    fn write_at(&self, now: u64, message: &str, mut emit: impl FnMut(&str)) -> LogOutcome {
        let admitted = self.admit(now);
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.unsummarised.fetch_add(1, Ordering::Relaxed);
        }
        self.summarise(now, &mut emit);
        if !admitted {
            return LogOutcome::Dropped;
        }
        match cut(message, self.limits.line_bytes) {
            None => {
                self.written.fetch_add(1, Ordering::Relaxed);
                emit(message);
                LogOutcome::Written
            }
            Some(kept) => {
                self.cut.fetch_add(1, Ordering::Relaxed);
                emit(&format!(
                    "{kept}… [cut: {} of {} bytes kept]",
                    kept.len(),
                    message.len()
                ));
                LogOutcome::Cut
            }
        }
    }

    /// Takes a token from the bucket, if one is there at `now`.
    fn admit(&self, now: u64) -> bool {
        let mut due = self.due_ns.load(Ordering::Relaxed);
        loop {
            let start = due.max(now);
            if start - now > self.burst_ns {
                return false;
            }
            match self.due_ns.compare_exchange_weak(
                due,
                start + self.interval_ns,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => due = actual,
            }
        }
    }

    /// Writes one summary of the dropped lines, if there are any and the
    /// last summary is a second old; one thread wins the right to.
    fn summarise(&self, now: u64, emit: &mut impl FnMut(&str)) {
        if self.unsummarised.load(Ordering::Relaxed) == 0 {
            return;
        }
        let last = self.summarised_at_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < SECOND_NS {
            return;
        }
        if self
            .summarised_at_ns
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let dropped = self.unsummarised.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            emit(&format!(
                "{dropped} log lines dropped: over plugins.log_lines_per_second = {}",
                self.limits.lines_per_second
            ));
        }
    }
}

fn emit(level: tracing::Level, plugin: &str, line: &str) {
    match level {
        tracing::Level::TRACE => tracing::trace!(plugin, "{line}"),
        tracing::Level::DEBUG => tracing::debug!(plugin, "{line}"),
        tracing::Level::INFO => tracing::info!(plugin, "{line}"),
        tracing::Level::WARN => tracing::warn!(plugin, "{line}"),
        tracing::Level::ERROR => tracing::error!(plugin, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(line_bytes: usize, lines_per_second: u32) -> PluginLog {
        PluginLog::new(
            "chatty".into(),
            LogLimits {
                line_bytes,
                lines_per_second,
            },
        )
    }

    #[test]
    fn a_line_is_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 8), None);
        assert_eq!(cut("exactly8", 8), None);
        assert_eq!(cut("a longer line", 8), Some("a longer"));
        // "é" is two bytes: cutting at 2 would split it.
        assert_eq!(cut("aéb", 2), Some("a"));
        assert_eq!(cut("€€", 4), Some("€"));
        assert_eq!(cut("€", 2), Some(""));
    }

    #[test]
    fn a_cut_line_is_marked_and_counted() {
        let log = log(16, 10);
        let mut lines = Vec::new();
        let long = "x".repeat(65_536);
        let outcome = log.write_at(1, &long, |line| lines.push(line.to_string()));
        assert_eq!(outcome, LogOutcome::Cut);
        assert_eq!(lines, ["xxxxxxxxxxxxxxxx… [cut: 16 of 65536 bytes kept]"]);
        assert_eq!(log.write_at(2, "fits", |_| {}), LogOutcome::Written);
        assert_eq!(
            log.counts(),
            LogCounts {
                written: 1,
                cut: 1,
                dropped: 0
            }
        );
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_the_rate() {
        let log = log(1024, 10);
        let start = 1_000;
        let outcomes: Vec<_> = (0..15)
            .map(|_| log.write_at(start, "line", |_| {}))
            .collect();
        assert!(outcomes[..10].iter().all(|o| *o == LogOutcome::Written));
        assert!(outcomes[10..].iter().all(|o| *o == LogOutcome::Dropped));
        // A tenth of a second later, one more token.
        let later = start + SECOND_NS / 10;
        assert_eq!(log.write_at(later, "line", |_| {}), LogOutcome::Written);
        assert_eq!(log.write_at(later, "line", |_| {}), LogOutcome::Dropped);
        // After a quiet second the bucket is full again, not fuller.
        let quiet = later + 5 * SECOND_NS;
        let burst = (0..12)
            .filter(|_| log.write_at(quiet, "line", |_| {}) != LogOutcome::Dropped)
            .count();
        assert_eq!(burst, 10);
        assert_eq!(log.counts().dropped, 5 + 1 + 2);
    }

    #[test]
    fn dropped_lines_are_summarised_at_most_once_a_second() {
        let log = log(1024, 2);
        let mut lines = Vec::new();
        let mut write = |at: u64| log.write_at(at, "line", |l| lines.push(l.to_string()));
        let start = 1_000;
        for _ in 0..5 {
            write(start);
        }
        // Two written; the first drop is summarised at once, the next two wait.
        assert_eq!(
            lines,
            [
                "line",
                "line",
                "1 log lines dropped: over plugins.log_lines_per_second = 2"
            ]
        );
        lines.clear();
        // The plugin logs again after a quiet spell: the rest are summarised
        // before its line.
        let mut write = |at: u64| log.write_at(at, "line", |l| lines.push(l.to_string()));
        write(start + 3 * SECOND_NS);
        assert_eq!(
            lines,
            [
                "2 log lines dropped: over plugins.log_lines_per_second = 2",
                "line"
            ]
        );
        assert_eq!(log.counts().dropped, 3);
    }

    #[test]
    fn threads_share_one_bucket() {
        let log = Arc::new(log(1024, 100));
        let now = now_ns();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| log.write_at(now, "line", |_| {}) != LogOutcome::Dropped)
                        .count()
                })
            })
            .collect();
        let written: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(written, 100, "one bucket of 100 for every thread");
        assert_eq!(log.counts().dropped, 300);
    }
}

/// A plugin's stdout or stderr: each line it writes goes to its log, at
/// `info` (stdout) or `warn` (stderr), bounded like its `log` calls. Always
/// ready and never blocking, so a guest's `print` costs its worker nothing
/// but the line.
#[derive(Debug, Clone)]
pub struct LogOutput {
    log: Arc<PluginLog>,
    level: tracing::Level,
}

impl LogOutput {
    /// The plugin's stdout (`info`) or stderr (`warn`) into `log`.
    pub fn new(log: Arc<PluginLog>, level: tracing::Level) -> Self {
        LogOutput { log, level }
    }
}

/// Bytes of a line kept while it waits for its newline; past it the line
/// is written as it stands.
const PENDING_LINE_BYTES: usize = 64 * 1024;

/// One open handle on a [`LogOutput`], holding the line being written.
struct LogStream {
    output: LogOutput,
    pending: Vec<u8>,
}

impl LogStream {
    fn emit_complete_lines(&mut self) {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..end]);
        }
        if self.pending.len() >= PENDING_LINE_BYTES {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        self.output.log.write(self.output.level, line);
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        self.emit_complete_lines();
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(PENDING_LINE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(LogStream {
            output: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 components write through it; none are loaded.
        Box::new(tokio::io::sink())
    }
}
