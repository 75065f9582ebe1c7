//! Rollouts: a candidate version of a balancer tried on live traffic beside
//! the serving one, then promoted or rolled back by itself.
//!
//! A rollout runs in phases. In the shadow phase the candidate is called on
//! a sample of picks after the live version, and its answer is compared and
//! discarded. In each canary step it answers a share of picks itself. Every
//! phase lasts until the candidate has made `promote_after_calls` calls and
//! passes when each threshold holds over them; the first breach ends the
//! rollout. The request path only counts (relaxed atomics in the phase's
//! [`PhaseStats`]); a task judges the counts every [`JUDGE_EVERY`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::registry::{Note, PluginVersion};
use crate::config::{Agreement, RolloutConfig};
use crate::engine::{
    EndpointId, Histogram, HistogramSnapshot, PickFault, PlacedBy, PlacementOutcomes,
    PLUGIN_CALL_BOUNDS_NS, REQUEST_BOUNDS_NS,
};

/// How often a running rollout's counts are judged.
pub const JUDGE_EVERY: Duration = Duration::from_millis(50);

/// Endpoint ids counted apart in a shadow phase's comparison of picks;
/// picks of higher ids are compared only exactly.
const TALLIED_IDS: usize = 4096;

/// A request's latency under this much more than the live version's is
/// never a breach: below it, p99 ratios of fast endpoints are noise.
const LATENCY_SLACK: Duration = Duration::from_millis(1);

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// The candidate is called beside the live version; its answers are
    /// discarded.
    Shadow,
    /// The candidate answers a share of picks.
    Canary,
    /// Every phase passed and `auto_promote` is off: waiting for an
    /// operator to promote or abort.
    Held,
    /// The candidate serves every pick now.
    Promoted,
    /// A threshold was breached: the live version kept serving.
    RolledBack,
    /// An operator, a newer candidate or a change of the serving version
    /// ended it.
    Aborted,
}

impl RolloutState {
    /// Whether the rollout has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutState::Promoted | RolloutState::RolledBack | RolloutState::Aborted
        )
    }
}

/// Which side of a rollout a pick goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The live version alone, neither its cost nor its outcome compared.
    Live,
    /// The live version, its outcome compared with the candidate's.
    LiveCompared,
    /// The live version answers; the candidate is called too and compared.
    Shadow,
    /// The candidate answers.
    Candidate,
}

/// Outcomes of the requests one side placed.
#[derive(Debug)]
pub(crate) struct LaneOutcomes {
    requests: AtomicU64,
    failures: AtomicU64,
    latency: Histogram,
}

impl LaneOutcomes {
    fn new() -> Self {
        LaneOutcomes {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: Histogram::new(&REQUEST_BOUNDS_NS),
        }
    }
}

/// The counts of one phase, kept by the request path.
#[derive(Debug)]
pub(crate) struct PhaseStats {
    /// 0: the shadow phase; 1 and up: the canary step.
    pub phase: u32,
    /// Of 10,000 picks, how many the candidate is called on (shadow) or
    /// answers (canary).
    pub share_basis_points: u32,
    pub candidate_calls: AtomicU64,
    pub candidate_faults: AtomicU64,
    pub candidate_cost: Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>,
    pub live_cost: Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>,
    /// Shadow picks where both answered, and those with the same endpoint.
    pub compared: AtomicU64,
    pub agreed: AtomicU64,
    outcomes: [LaneOutcomes; 2],
    last_fault: arc_swap::ArcSwapOption<Note>,
}

impl PhaseStats {
    fn new(phase: u32, share_basis_points: u32) -> Self {
        PhaseStats {
            phase,
            share_basis_points,
            candidate_calls: AtomicU64::new(0),
            candidate_faults: AtomicU64::new(0),
            candidate_cost: Histogram::new(&PLUGIN_CALL_BOUNDS_NS),
            live_cost: Histogram::new(&PLUGIN_CALL_BOUNDS_NS),
            compared: AtomicU64::new(0),
            agreed: AtomicU64::new(0),
            outcomes: [LaneOutcomes::new(), LaneOutcomes::new()],
            last_fault: arc_swap::ArcSwapOption::empty(),
        }
    }

    fn lane(&self, by: PlacedBy) -> &LaneOutcomes {
        &self.outcomes[by as usize]
    }
}

impl PlacementOutcomes for PhaseStats {
    fn record(&self, by: PlacedBy, latency_ns: u64, success: bool) {
        let lane = self.lane(by);
        lane.requests.fetch_add(1, Ordering::Relaxed);
        if !success {
            lane.failures.fetch_add(1, Ordering::Relaxed);
        }
        lane.latency.observe(Duration::from_nanos(latency_ns));
    }
}

/// How often each endpoint of one pool was picked by either side in the
/// shadow phase.
#[derive(Debug)]
pub(crate) struct ShadowTally {
    live: Box<[AtomicU64]>,
    candidate: Box<[AtomicU64]>,
}

impl ShadowTally {
    fn new(ids: usize) -> Self {
        let ids = ids.clamp(1, TALLIED_IDS);
        ShadowTally {
            live: (0..ids).map(|_| AtomicU64::new(0)).collect(),
            candidate: (0..ids).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn count(&self, live: EndpointId, candidate: EndpointId) {
        if let Some(cell) = self.live.get(live as usize) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(cell) = self.candidate.get(candidate as usize) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The total variation distance between the two sides' shares of
    /// picks per endpoint, and how many picks it rests on.
    fn distance(&self) -> (f64, u64) {
        let load = |cells: &[AtomicU64]| -> Vec<u64> {
            cells.iter().map(|c| c.load(Ordering::Relaxed)).collect()
        };
        let (live, candidate) = (load(&self.live), load(&self.candidate));
        let (live_total, candidate_total) =
            (live.iter().sum::<u64>(), candidate.iter().sum::<u64>());
        if live_total == 0 || candidate_total == 0 {
            return (0.0, 0);
        }
        let distance = live
            .iter()
            .zip(&candidate)
            .map(|(&l, &c)| {
                (l as f64 / live_total as f64 - c as f64 / candidate_total as f64).abs()
            })
            .sum::<f64>()
            / 2.0;
        (distance, live_total.min(candidate_total))
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `shadow`, or `canary 2/5`.
    pub phase: String,
    /// The share of picks the candidate was called on or answered, in percent.
    pub share_percent: f64,
    /// `passed`, or why it did not.
    pub result: String,
    /// What was measured over it.
    pub comparison: Comparison,
}

/// Live and candidate side by side over one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Calls into the candidate.
    pub candidate_calls: u64,
    /// Of them, faults (trap, timeout, decline, out of the set).
    pub candidate_faults: u64,
    /// Faults per call.
    pub candidate_fault_rate: f64,
    /// Cost per call of each side, in µs (estimated from buckets).
    pub cost_micros: SideBySide<CallCost>,
    /// The candidate's p50 and p99 cost over the live version's.
    pub cost_ratio: CallCost,
    /// Shadow picks compared.
    pub compared: u64,
    /// The share of compared requests placed on a different endpoint.
    pub exact_disagreement: f64,
    /// The distance between the two sides' shares of picks per endpoint.
    pub distribution_disagreement: f64,
    /// The requests each side placed.
    pub outcomes: SideBySide<Outcomes>,
}

/// A value for the live version and one for the candidate.
#[derive(Debug, Clone, Serialize)]
pub struct SideBySide<T> {
    /// The serving version.
    pub live: T,
    /// The candidate.
    pub candidate: T,
}

/// Two quantiles of a call's cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallCost {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// The outcomes of the requests one side placed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Outcomes {
    /// Attempts forwarded.
    pub requests: u64,
    /// Failed (connect error, reset, timeout, 5xx).
    pub failures: u64,
    /// Failures per request.
    pub error_rate: f64,
    /// Median latency, in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in ms.
    pub p99_ms: Option<f64>,
}

/// One candidate version on trial.
#[derive(Debug)]
pub struct Rollout {
    /// The candidate.
    pub candidate: Arc<PluginVersion>,
    /// The version it is compared with, serving when it started.
    pub live: Arc<PluginVersion>,
    /// How it runs.
    pub settings: RolloutConfig,
    /// Where the candidate came from: its file, or the API.
    pub source: String,
    /// When it started.
    pub started: Note,
    started_at: Instant,
    running: AtomicBool,
    /// `RolloutState` of a running rollout (`Shadow`, `Canary`, `Held`).
    state: Mutex<RolloutState>,
    stats: ArcSwap<PhaseStats>,
    /// Set on the request path at the first fault past the budget, so the
    /// candidate is out of the traffic before the next judgement.
    breached: AtomicBool,
    tallies: HashMap<String, ShadowTally>,
    phases: Mutex<Vec<PhaseReport>>,
    end: Mutex<Option<Note>>,
}

impl Rollout {
    /// A rollout of `candidate` against `live` in the pools named in
    /// `pools` (with their endpoint counts), starting in its first phase.
    pub(crate) fn new(
        candidate: Arc<PluginVersion>,
        live: Arc<PluginVersion>,
        settings: RolloutConfig,
        source: String,
        pools: impl IntoIterator<Item = (String, usize)>,
    ) -> Self {
        let first = if settings.shadow_percent > 0.0 { 0 } else { 1 };
        let rollout = Rollout {
            started: Note::now(format!(
                "candidate {} of `{}` against {}",
                &candidate.hash[..12],
                source,
                &live.hash[..12]
            )),
            candidate,
            live,
            source,
            started_at: Instant::now(),
            running: AtomicBool::new(true),
            state: Mutex::new(RolloutState::Shadow),
            stats: ArcSwap::from_pointee(PhaseStats::new(0, 0)),
            breached: AtomicBool::new(false),
            tallies: pools
                .into_iter()
                .map(|(pool, ids)| (pool, ShadowTally::new(ids)))
                .collect(),
            phases: Mutex::new(Vec::new()),
            end: Mutex::new(None),
            settings,
        };
        rollout.enter(first);
        rollout
    }

    /// Whether the candidate still takes part in picks.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Where it stands.
    pub fn state(&self) -> RolloutState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long it has run (or ran).
    pub fn elapsed(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// Why and when it ended.
    pub fn end(&self) -> Option<Note> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The phases that ended, first first.
    pub fn phases(&self) -> Vec<PhaseReport> {
        self.phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current phase: `shadow` or `canary N/STEPS`.
    pub fn phase_name(&self) -> String {
        self.describe_phase(self.stats.load().phase)
    }

    fn describe_phase(&self, phase: u32) -> String {
        if phase == 0 {
            "shadow".into()
        } else {
            format!("canary {phase}/{}", self.settings.steps)
        }
    }

    /// The share of picks the candidate is called on or answers now, in
    /// percent.
    pub fn share_percent(&self) -> f64 {
        f64::from(self.stats.load().share_basis_points) / 100.0
    }

    /// Starts `phase` with fresh counts.
    fn enter(&self, phase: u32) {
        let share = if phase == 0 {
            self.settings.shadow_percent
        } else {
            self.settings.canary_share(phase)
        };
        let basis_points = (share * 100.0).round().clamp(0.0, 10_000.0) as u32;
        self.stats
            .store(Arc::new(PhaseStats::new(phase, basis_points)));
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = if phase == 0 {
            RolloutState::Shadow
        } else {
            RolloutState::Canary
        };
    }

    /// Which side the next pick goes to, and the phase's counts.
    pub(crate) fn lane(&self) -> (Lane, arc_swap::Guard<Arc<PhaseStats>>) {
        let stats = self.stats.load();
        if self.breached.load(Ordering::Relaxed) {
            return (Lane::Live, stats);
        }
        let drawn = self.draw();
        let lane = match (stats.phase, drawn < stats.share_basis_points) {
            (0, true) => Lane::Shadow,
            (0, false) => Lane::Live,
            (_, true) => Lane::Candidate,
            (_, false) => Lane::LiveCompared,
        };
        (lane, stats)
    }

    /// A number below 10,000, from the worker's own generator: no counter
    /// shared by the workers, whose cache line every pick would pull.
    fn draw(&self) -> u32 {
        fastrand::u32(..10_000)
    }

    /// Counts a candidate fault in `pool`; past the phase's fault budget
    /// the candidate leaves the traffic at once.
    pub(crate) fn count_fault(&self, stats: &PhaseStats, pool: &str, fault: &PickFault) {
        let faults = stats.candidate_faults.fetch_add(1, Ordering::Relaxed) + 1;
        let calls = stats.candidate_calls.load(Ordering::Relaxed);
        stats
            .last_fault
            .store(Some(Arc::new(Note::now(format!("pool `{pool}`: {fault}")))));
        if faults as f64 > self.fault_budget(calls) {
            self.breached.store(true, Ordering::Relaxed);
        }
    }

    /// Faults allowed over a phase that has seen `calls` calls: a share of
    /// the phase's length, so one early fault does not end it.
    fn fault_budget(&self, calls: u64) -> f64 {
        self.settings.max_fault_rate * calls.max(self.settings.promote_after_calls) as f64
    }

    /// Counts a shadow pick where both sides answered.
    pub(crate) fn compare(
        &self,
        stats: &PhaseStats,
        pool: &str,
        live: EndpointId,
        candidate: EndpointId,
    ) {
        stats.compared.fetch_add(1, Ordering::Relaxed);
        if live == candidate {
            stats.agreed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tally) = self.tallies.get(pool) {
            tally.count(live, candidate);
        }
    }

    /// The current phase's comparison.
    pub fn comparison(&self) -> Comparison {
        self.compare_phase(&self.stats.load())
    }

    fn compare_phase(&self, stats: &PhaseStats) -> Comparison {
        let calls = stats.candidate_calls.load(Ordering::Relaxed);
        let faults = stats.candidate_faults.load(Ordering::Relaxed);
        let cost = |snapshot: HistogramSnapshot<{ PLUGIN_CALL_BOUNDS_NS.len() }>| CallCost {
            p50: snapshot.quantile(0.5).map(|s| s * 1e6),
            p99: snapshot.quantile(0.99).map(|s| s * 1e6),
        };
        let (live_cost, candidate_cost) = (
            cost(stats.live_cost.snapshot()),
            cost(stats.candidate_cost.snapshot()),
        );
        let ratio = |c: Option<f64>, l: Option<f64>| match (c, l) {
            (Some(c), Some(l)) if l > 0.0 => Some(c / l),
            _ => None,
        };
        let compared = stats.compared.load(Ordering::Relaxed);
        let agreed = stats.agreed.load(Ordering::Relaxed);
        let (mut weighted, mut weight) = (0.0, 0u64);
        if stats.phase == 0 {
            for tally in self.tallies.values() {
                let (distance, picks) = tally.distance();
                weighted += distance * picks as f64;
                weight += picks;
            }
        }
        let outcomes = |lane: &LaneOutcomes| {
            let requests = lane.requests.load(Ordering::Relaxed);
            let failures = lane.failures.load(Ordering::Relaxed);
            let latency = lane.latency.snapshot();
            Outcomes {
                requests,
                failures,
                error_rate: share(failures, requests),
                p50_ms: latency.quantile(0.5).map(|s| s * 1e3),
                p99_ms: latency.quantile(0.99).map(|s| s * 1e3),
            }
        };
        Comparison {
            candidate_calls: calls,
            candidate_faults: faults,
            candidate_fault_rate: share(faults, calls),
            cost_ratio: CallCost {
                p50: ratio(candidate_cost.p50, live_cost.p50),
                p99: ratio(candidate_cost.p99, live_cost.p99),
            },
            cost_micros: SideBySide {
                live: live_cost,
                candidate: candidate_cost,
            },
            compared,
            exact_disagreement: if compared == 0 {
                0.0
            } else {
                1.0 - share(agreed, compared).min(1.0)
            },
            distribution_disagreement: if weight == 0 {
                0.0
            } else {
                weighted / weight as f64
            },
            outcomes: SideBySide {
                live: outcomes(stats.lane(PlacedBy::Live)),
                candidate: outcomes(stats.lane(PlacedBy::Candidate)),
            },
        }
    }

    /// The last candidate fault of the current phase.
    pub fn last_fault(&self) -> Option<Note> {
        self.stats
            .load()
            .last_fault
            .load_full()
            .map(|note| (*note).clone())
    }

    /// Judges the current phase: what happens next.
    pub(crate) fn judge(&self) -> Judgement {
        if !self.is_running() {
            return Judgement::Wait;
        }
        let stats = self.stats.load_full();
        let comparison = self.compare_phase(&stats);
        let settings = &self.settings;
        let calls = comparison.candidate_calls;
        if comparison.candidate_faults as f64 > self.fault_budget(calls) {
            let fault = self
                .last_fault()
                .map_or_else(String::new, |note| format!(" (last: {})", note.message));
            return self.breach(
                &stats,
                comparison.clone(),
                format!(
                    "{} faults in {} calls is over max_fault_rate = {}{fault}",
                    comparison.candidate_faults, calls, settings.max_fault_rate
                ),
            );
        }
        if stats.phase == 0
            && settings.agreement == Agreement::Exact
            && (comparison.compared as f64 * comparison.exact_disagreement).round()
                > settings.max_disagreement * settings.promote_after_calls as f64
        {
            return self.breach(
                &stats,
                comparison.clone(),
                format!(
                    "the candidate placed {:.1}% of {} compared requests elsewhere than the live version (max_disagreement = {})",
                    comparison.exact_disagreement * 100.0,
                    comparison.compared,
                    settings.max_disagreement
                ),
            );
        }
        if *self.state.lock().unwrap_or_else(|e| e.into_inner()) == RolloutState::Held {
            return Judgement::Wait;
        }
        if calls < settings.promote_after_calls {
            return Judgement::Wait;
        }
        if let Some(reason) = self.threshold_breached(&stats, &comparison) {
            return self.breach(&stats, comparison, reason);
        }
        self.pass(&stats, comparison)
    }

    /// The first threshold a finished phase breaks, if any.
    fn threshold_breached(&self, stats: &PhaseStats, comparison: &Comparison) -> Option<String> {
        let settings = &self.settings;
        let cost = &comparison.cost_micros;
        for (name, ratio, candidate, live) in [
            (
                "p50",
                comparison.cost_ratio.p50,
                cost.candidate.p50,
                cost.live.p50,
            ),
            (
                "p99",
                comparison.cost_ratio.p99,
                cost.candidate.p99,
                cost.live.p99,
            ),
        ] {
            if let (Some(ratio), Some(candidate), Some(live)) = (ratio, candidate, live) {
                if ratio > settings.max_cost_ratio {
                    return Some(format!(
                        "the candidate's {name} cost per call is {candidate:.2} µs, {ratio:.1}× the live version's {live:.2} µs (max_cost_ratio = {})",
                        settings.max_cost_ratio
                    ));
                }
            }
        }
        if stats.phase == 0 {
            let (measure, value) = match settings.agreement {
                Agreement::Distribution => ("distribution", comparison.distribution_disagreement),
                Agreement::Exact => ("exact", comparison.exact_disagreement),
            };
            if value > settings.max_disagreement {
                return Some(format!(
                    "the candidate's picks disagree with the live version's by {value:.3} ({measure}, over {} compared picks; max_disagreement = {})",
                    comparison.compared, settings.max_disagreement
                ));
            }
            return None;
        }
        let (live, candidate) = (&comparison.outcomes.live, &comparison.outcomes.candidate);
        if candidate.requests > 0
            && candidate.error_rate > live.error_rate + settings.max_error_rate_increase
        {
            return Some(format!(
                "{:.2}% of the requests the candidate placed failed, against {:.2}% of the live version's (max_error_rate_increase = {})",
                candidate.error_rate * 100.0,
                live.error_rate * 100.0,
                settings.max_error_rate_increase
            ));
        }
        if let (Some(c), Some(l)) = (candidate.p99_ms, live.p99_ms) {
            let slack_ms = LATENCY_SLACK.as_secs_f64() * 1e3;
            if c > l * settings.max_latency_ratio && c - l > slack_ms {
                return Some(format!(
                    "the requests the candidate placed took {c:.2} ms at p99, against {l:.2} ms for the live version's (max_latency_ratio = {})",
                    settings.max_latency_ratio
                ));
            }
        }
        None
    }

    fn breach(&self, stats: &PhaseStats, comparison: Comparison, reason: String) -> Judgement {
        self.report(stats, comparison, format!("breached: {reason}"));
        Judgement::RollBack(format!("{}: {reason}", self.describe_phase(stats.phase)))
    }

    fn pass(&self, stats: &PhaseStats, comparison: Comparison) -> Judgement {
        self.report(stats, comparison, "passed".into());
        let steps_left = self.settings.canary_percent > 0.0 && stats.phase < self.settings.steps;
        if steps_left {
            self.enter(stats.phase + 1);
            return Judgement::NextPhase(self.phase_name());
        }
        if self.settings.auto_promote {
            Judgement::Promote(format!(
                "every phase passed ({} in all)",
                self.phases.lock().unwrap_or_else(|e| e.into_inner()).len()
            ))
        } else {
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = RolloutState::Held;
            Judgement::Hold
        }
    }

    fn report(&self, stats: &PhaseStats, comparison: Comparison, result: String) {
        self.phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PhaseReport {
                phase: self.describe_phase(stats.phase),
                share_percent: f64::from(stats.share_basis_points) / 100.0,
                result,
                comparison,
            });
    }

    /// Ends the rollout in `state` for `reason`; false if it had ended.
    pub(crate) fn finish(&self, state: RolloutState, reason: String) -> bool {
        if !self.running.swap(false, Ordering::AcqRel) {
            return false;
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Note::now(reason));
        true
    }
}

/// What a judgement of a rollout's counts calls for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Judgement {
    /// Not enough calls yet.
    Wait,
    /// The phase passed; the next began (named).
    NextPhase(String),
    /// Every phase passed; waiting for an operator.
    Hold,
    /// Every phase passed: promote, for this reason.
    Promote(String),
    /// A threshold broke: roll back, for this reason.
    RollBack(String),
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distance_of_two_pick_tallies_is_half_the_sum_of_share_differences() {
        let tally = ShadowTally::new(3);
        assert_eq!(tally.distance(), (0.0, 0), "nothing compared yet");
        // Live takes turns over three endpoints; the candidate pins the first.
        for turn in 0..300u32 {
            tally.count(turn % 3, 0);
        }
        let (distance, picks) = tally.distance();
        assert!((distance - 2.0 / 3.0).abs() < 1e-9, "{distance}");
        assert_eq!(picks, 300);

        let same = ShadowTally::new(3);
        for turn in 0..300u32 {
            same.count(turn % 3, (turn + 1) % 3);
        }
        assert!(same.distance().0 < 1e-9, "the same shares, picked apart");
    }

    #[test]
    fn ids_past_the_tally_are_left_out_rather_than_grow_it() {
        let tally = ShadowTally::new(TALLIED_IDS * 2);
        assert_eq!(tally.live.len(), TALLIED_IDS);
        tally.count(TALLIED_IDS as u32 + 5, 0);
        assert_eq!(tally.distance(), (0.0, 0));
    }
}
