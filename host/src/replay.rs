//! `switchyard plugin replay`: makes the picks of a recording (a pool's
//! `record = { ... }`) again through a plugin file, each host call answered
//! from the recording, and reports where its decisions differ from the
//! recorded ones (with the inputs that led to them), its faults, and its
//! cost per call beside the recorded version's.
//!
//! Replaying a recording through the version that made it agrees on every
//! pick for a policy whose decision rests on the request, the endpoint set
//! and what the host answered; a policy that keeps state from pick to pick
//! (a cursor) agrees from a full recording (`percent = 100`), whose picks
//! are replayed worker by worker on an instance each, as they were made.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::PluginsConfig;
use crate::plugins::{
    HostCall, Line, LoadOutcome, PluginRuntime, RecordedEndpoint, RecordedPick, RecordedRequest,
};

/// Differing picks shown in full, unless asked otherwise.
pub const EXAMPLES: usize = 10;

/// What `plugin replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The recording (JSON lines).
    pub recording: PathBuf,
    /// The plugin file replayed.
    pub plugin: PathBuf,
    /// The config to make each pool's state with; by default the one each
    /// session recorded.
    pub config_json: Option<String>,
    /// Differing picks shown in full.
    pub examples: usize,
}

/// What a replay found.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// The recording.
    pub recording: String,
    /// The plugin file replayed, and its SHA-256.
    pub plugin: String,
    /// Its SHA-256.
    pub hash: String,
    /// The versions the recording was made by (SHA-256), in order.
    pub recorded_versions: Vec<String>,
    /// Whether the file replayed is the one that made every pick.
    pub same_version: bool,
    /// Sessions (runs or rebuilds of the pool) in the recording.
    pub sessions: u64,
    /// Picks replayed.
    pub picks: u64,
    /// Of them, those whose decision was the recorded one.
    pub agreed: u64,
    /// `agreed / picks`, in percent.
    pub agreement_percent: f64,
    /// Picks for which the version asked the host what the recording did
    /// not have next (another endpoint's load, one more random number).
    pub diverged_calls: u64,
    /// Faults: (recorded, replayed).
    pub faults: SideBySide<u64>,
    /// Cost per call, ns: p50 and p99 of each.
    pub cost_ns: SideBySide<Quantiles>,
    /// Decisions, by endpoint: how often each side placed a request there.
    pub placements: Vec<Placement>,
    /// The first differing picks, with what led to them.
    pub differences: Vec<Difference>,
    /// Lines that could not be read, with their numbers.
    pub unreadable_lines: Vec<String>,
}

/// A value for the recorded version and one for the replayed file.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SideBySide<T> {
    /// As recorded.
    pub recorded: T,
    /// As replayed.
    pub replayed: T,
}

/// Two quantiles.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

/// How many picks each side placed on one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// The endpoint (`none`: declined or faulted).
    pub endpoint: String,
    /// Recorded picks.
    pub recorded: u64,
    /// Replayed picks.
    pub replayed: u64,
}

/// One pick decided otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Its line in the recording.
    pub line: u64,
    /// The worker that made it.
    pub worker: u32,
    /// The request.
    pub request: RecordedRequest,
    /// The endpoint set's generation and size.
    pub generation: u64,
    /// Eligible endpoints.
    pub endpoints: usize,
    /// The host calls recorded, with their answers.
    pub calls: Vec<HostCall>,
    /// The recorded decision (endpoint id), and its fault.
    pub recorded: Option<u32>,
    /// The recorded fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_fault: Option<String>,
    /// The replayed decision.
    pub replayed: Option<u32>,
    /// The replayed fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_fault: Option<String>,
}

/// Replays `request.recording` through `request.plugin`.
pub fn replay(request: &ReplayRequest) -> anyhow::Result<ReplayReport> {
    let text = std::fs::read(&request.recording)
        .with_context(|| format!("cannot read {}", request.recording.display()))?;
    let mut lines = Vec::new();
    let mut unreadable_lines = Vec::new();
    for (index, bytes) in text.split(|&b| b == b'\n').enumerate() {
        let number = index as u64 + 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(bytes) {
            Ok(line) => lines.push((number, line)),
            // A line cut by a crash or a full disk ends the file; say so,
            // replay the rest.
            Err(error) => unreadable_lines.push(format!("line {number}: {error}")),
        }
    }
    let (sessions, sets) = endpoint_sets(&lines);
    if sessions == 0 {
        anyhow::bail!(
            "{} holds no recording session: a recording is JSON lines, the first a `session` ({} of {} lines unreadable)",
            request.recording.display(),
            unreadable_lines.len(),
            unreadable_lines.len() + lines.len()
        );
    }

    let bytes = std::fs::read(&request.plugin)
        .with_context(|| format!("cannot read {}", request.plugin.display()))?;
    let hash = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let folder = crate::check::Scratch::new()?;
    let path = folder.path().join("replayed.wasm");
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    let runtime = PluginRuntime::new(&PluginsConfig {
        dir: folder.path().to_path_buf(),
        cache_dir: Some(folder.path().join(".cache")),
        watch: false,
        ..PluginsConfig::default()
    })?;
    match runtime.load(&path) {
        Ok(LoadOutcome::Loaded(_)) => {}
        Ok(_) => anyhow::bail!("a fresh runtime did not load the file anew"),
        Err(error) => anyhow::bail!(
            "{}: {}: {}",
            request.plugin.display(),
            error.stage,
            error.reason
        ),
    }
    let mut replayer = runtime
        .replayer("replayed")
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", request.plugin.display()))?;

    let mut report = ReplayReport {
        recording: request.recording.display().to_string(),
        plugin: request.plugin.display().to_string(),
        hash,
        recorded_versions: Vec::new(),
        same_version: false,
        sessions,
        picks: 0,
        agreed: 0,
        agreement_percent: 0.0,
        diverged_calls: 0,
        faults: SideBySide {
            recorded: 0,
            replayed: 0,
        },
        cost_ns: SideBySide {
            recorded: Quantiles::default(),
            replayed: Quantiles::default(),
        },
        placements: Vec::new(),
        differences: Vec::new(),
        unreadable_lines,
    };
    let (mut recorded_costs, mut replayed_costs) = (Vec::new(), Vec::new());
    let mut placements: HashMap<Option<u32>, (u64, u64)> = HashMap::new();
    let mut session = 0;
    for (number, line) in &lines {
        let pick = match line {
            Line::Session(recorded) => {
                session += 1;
                let config = request.config_json.as_deref().unwrap_or(&recorded.config);
                replayer.start_session(config, session);
                continue;
            }
            Line::Pick(pick) => pick,
        };
        if let Some(version) = &pick.version {
            if !report.recorded_versions.contains(version) {
                report.recorded_versions.push(version.clone());
            }
        }
        let Some(set) = sets.get(&(session, pick.generation)) else {
            report.unreadable_lines.push(format!(
                "line {number}: generation {} of the endpoint set was never recorded",
                pick.generation
            ));
            continue;
        };
        let replayed = replayer.pick(pick, set);
        report.picks += 1;
        recorded_costs.push(pick.cost_ns);
        replayed_costs.push(replayed.cost_ns);
        report.faults.recorded += u64::from(pick.fault.is_some());
        report.faults.replayed += u64::from(replayed.fault.is_some());
        report.diverged_calls += u64::from(replayed.diverged);
        placements
            .entry(decision(pick.picked, &pick.fault))
            .or_default()
            .0 += 1;
        placements
            .entry(decision(replayed.picked, &replayed.fault))
            .or_default()
            .1 += 1;
        let agrees =
            decision(pick.picked, &pick.fault) == decision(replayed.picked, &replayed.fault);
        if agrees {
            report.agreed += 1;
        } else if report.differences.len() < request.examples {
            report.differences.push(Difference {
                line: *number,
                worker: pick.worker,
                request: pick.request,
                generation: pick.generation,
                endpoints: set.len(),
                calls: pick.calls.clone(),
                recorded: pick.picked,
                recorded_fault: pick.fault.clone(),
                replayed: replayed.picked,
                replayed_fault: replayed.fault,
            });
        }
    }
    report.same_version = report.recorded_versions == [report.hash.clone()];
    report.agreement_percent = if report.picks == 0 {
        0.0
    } else {
        report.agreed as f64 * 100.0 / report.picks as f64
    };
    report.cost_ns = SideBySide {
        recorded: quantiles(&mut recorded_costs),
        replayed: quantiles(&mut replayed_costs),
    };
    let mut placements: Vec<_> = placements.into_iter().collect();
    placements.sort_by_key(|(endpoint, _)| endpoint.map_or(u64::MAX, u64::from));
    report.placements = placements
        .into_iter()
        .map(|(endpoint, (recorded, replayed))| Placement {
            endpoint: endpoint.map_or_else(|| "none".into(), |id| id.to_string()),
            recorded,
            replayed,
        })
        .collect();
    Ok(report)
}

/// The decision a pick came to: an endpoint, or none (declined or faulted).
fn decision(picked: Option<u32>, fault: &Option<String>) -> Option<u32> {
    if fault.is_some() {
        None
    } else {
        picked
    }
}

/// The endpoint sets recorded, by (session, generation), and how many
/// sessions there are.
fn endpoint_sets(lines: &[(u64, Line)]) -> (u64, HashMap<(u64, u64), Vec<RecordedEndpoint>>) {
    let mut sets = HashMap::new();
    let mut session = 0;
    for (_, line) in lines {
        match line {
            Line::Session(_) => session += 1,
            Line::Pick(RecordedPick {
                generation,
                endpoints: Some(endpoints),
                ..
            }) => {
                sets.insert((session, *generation), endpoints.clone());
            }
            Line::Pick(_) => {}
        }
    }
    (session, sets)
}

fn quantiles(values: &mut [u64]) -> Quantiles {
    if values.is_empty() {
        return Quantiles::default();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Quantiles {
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// The report as text.
pub fn render(report: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let duration = crate::check::duration;
    let _ = writeln!(
        out,
        "replayed {} through {}",
        report.recording, report.plugin
    );
    let versions = if report.same_version {
        "the version that made the recording".to_string()
    } else {
        format!(
            "recorded by {}",
            report
                .recorded_versions
                .iter()
                .map(|v| &v[..12.min(v.len())])
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = writeln!(out, "  file {} ({versions})", &report.hash[..12]);
    let _ = writeln!(
        out,
        "  {} picks in {} session(s): {} agree ({:.3}%), {} differ",
        report.picks,
        report.sessions,
        report.agreed,
        report.agreement_percent,
        report.picks - report.agreed
    );
    let _ = writeln!(
        out,
        "  host calls not in the recording, answered from what it holds: {} pick(s)",
        report.diverged_calls
    );
    let _ = writeln!(
        out,
        "  faults: recorded {}, replayed {}",
        report.faults.recorded, report.faults.replayed
    );
    let _ = writeln!(out, "  cost per call      recorded    replayed");
    for (name, recorded, replayed) in [
        (
            "p50",
            report.cost_ns.recorded.p50,
            report.cost_ns.replayed.p50,
        ),
        (
            "p99",
            report.cost_ns.recorded.p99,
            report.cost_ns.replayed.p99,
        ),
    ] {
        let _ = writeln!(
            out,
            "    {name:<14} {:>11} {:>11}",
            duration(recorded),
            duration(replayed)
        );
    }
    let _ = writeln!(out, "  placements by endpoint    recorded    replayed");
    for placement in &report.placements {
        let _ = writeln!(
            out,
            "    {:<22} {:>11} {:>11}",
            placement.endpoint, placement.recorded, placement.replayed
        );
    }
    for difference in &report.differences {
        let request = &difference.request;
        let _ = writeln!(
            out,
            "  line {}: worker {}, p{} attempt {}{}, generation {} ({} endpoints): recorded {}, replayed {}",
            difference.line,
            difference.worker,
            request.priority,
            request.attempt,
            request
                .hash
                .map_or_else(String::new, |hash| format!(" hash {hash:#x}")),
            difference.generation,
            difference.endpoints,
            shown(difference.recorded, &difference.recorded_fault),
            shown(difference.replayed, &difference.replayed_fault),
        );
        let _ = writeln!(
            out,
            "    host calls: {}",
            serde_json::to_string(&difference.calls).unwrap_or_default()
        );
    }
    for line in &report.unreadable_lines {
        let _ = writeln!(out, "  skipped {line}");
    }
    out
}

fn shown(picked: Option<u32>, fault: &Option<String>) -> String {
    match (picked, fault) {
        (_, Some(fault)) => format!("fault ({fault})"),
        (Some(id), None) => format!("endpoint {id}"),
        (None, None) => "declined".into(),
    }
}
