//! The pools' admission figures and latency histograms in the Prometheus
//! text format.

use std::fmt::Write as _;
use std::sync::Arc;

use super::family;
use crate::engine::{HistogramSnapshot, MirrorResult, Pool, Priority, Routes, ShedReason};

/// Writes the admission families (pools that limit requests) and the
/// latency histograms (classes and pools that saw requests).
pub(super) fn render(out: &mut String, pools: &[Arc<Pool>]) {
    let limited = || pools.iter().filter_map(|p| Some((p, p.admission()?)));
    family(
        out,
        "switchyard_pool_in_flight",
        "gauge",
        "Requests the pool is serving now (pools with a limit or endpoint capacities).",
    );
    for (pool, admission) in limited() {
        let view = admission.view();
        let _ = writeln!(
            out,
            "switchyard_pool_in_flight{{pool=\"{}\"}} {}",
            pool.name, view.in_flight
        );
    }
    family(
        out,
        "switchyard_pool_concurrency_limit",
        "gauge",
        "The pool's limit on requests in flight now: max_in_flight or the adaptive limit.",
    );
    for (pool, admission) in limited() {
        if let Some(limit) = admission.view().limit {
            let _ = writeln!(
                out,
                "switchyard_pool_concurrency_limit{{pool=\"{}\"}} {limit}",
                pool.name
            );
        }
    }
    family(
        out,
        "switchyard_pool_queued",
        "gauge",
        "Requests waiting in the pool's queue now.",
    );
    for (pool, admission) in limited() {
        let _ = writeln!(
            out,
            "switchyard_pool_queued{{pool=\"{}\"}} {}",
            pool.name,
            admission.view().queued
        );
    }
    family(
        out,
        "switchyard_queued_requests_total",
        "counter",
        "Requests that found no room and waited in the pool's queue, by class.",
    );
    for (pool, admission) in limited() {
        for class in Priority::ALL {
            let _ = writeln!(
                out,
                "switchyard_queued_requests_total{{pool=\"{}\",class=\"{}\"}} {}",
                pool.name,
                class.name(),
                admission.queued_total(class)
            );
        }
    }
    family(
        out,
        "switchyard_shed_requests_total",
        "counter",
        "Requests shed with 503, by class and reason (queue_full, wait).",
    );
    for (pool, admission) in limited() {
        for class in Priority::ALL {
            for reason in ShedReason::ALL {
                let _ = writeln!(
                    out,
                    "switchyard_shed_requests_total{{pool=\"{}\",class=\"{}\",reason=\"{}\"}} {}",
                    pool.name,
                    class.name(),
                    reason.label(),
                    admission.shed_total(class, reason)
                );
            }
        }
    }
    family(
        out,
        "switchyard_queue_wait_seconds",
        "histogram",
        "How long requests that were queued waited for room, by class.",
    );
    for (pool, admission) in limited() {
        for (class, histogram) in admission.queue_wait.observed() {
            let labels = format!("pool=\"{}\",class=\"{}\"", pool.name, class.name());
            histogram_series(
                out,
                "switchyard_queue_wait_seconds",
                &labels,
                &histogram.snapshot(),
            );
        }
    }
    family(
        out,
        "switchyard_added_latency_seconds",
        "histogram",
        "Time from a request's head to its sending to an endpoint: routing, queueing, the pick.",
    );
    for pool in pools {
        for (class, histogram) in pool.added_latency.observed() {
            let labels = format!("pool=\"{}\",class=\"{}\"", pool.name, class.name());
            histogram_series(
                out,
                "switchyard_added_latency_seconds",
                &labels,
                &histogram.snapshot(),
            );
        }
    }
    family(
        out,
        "switchyard_request_duration_seconds",
        "histogram",
        "Time from a request's head to its response's head, queueing and retries included.",
    );
    for pool in pools {
        let snapshot = pool.duration.snapshot();
        if snapshot.count > 0 {
            let labels = format!("pool=\"{}\"", pool.name);
            histogram_series(
                out,
                "switchyard_request_duration_seconds",
                &labels,
                &snapshot,
            );
        }
    }
}

/// The named routes' request durations.
pub(super) fn render_routes(out: &mut String, routes: &Routes) {
    family(
        out,
        "switchyard_route_request_duration_seconds",
        "histogram",
        "Time from a request's head to its response's head, by named route.",
    );
    for (name, histogram) in routes.named() {
        let snapshot = histogram.snapshot();
        if snapshot.count > 0 {
            let labels = format!("route=\"{name}\"");
            histogram_series(
                out,
                "switchyard_route_request_duration_seconds",
                &labels,
                &snapshot,
            );
        }
    }
}

/// Copies routes mirrored to each pool, for pools that were sent any.
pub(super) fn render_mirrors(out: &mut String, pools: &[Arc<Pool>]) {
    family(
        out,
        "switchyard_mirror_requests_total",
        "counter",
        "Copies of requests routes mirrored to the pool, by result (sent, dropped, failed).",
    );
    for pool in pools {
        if MirrorResult::ALL.iter().all(|r| pool.mirrored(*r) == 0) {
            continue;
        }
        for result in MirrorResult::ALL {
            let _ = writeln!(
                out,
                "switchyard_mirror_requests_total{{pool=\"{}\",result=\"{}\"}} {}",
                pool.name,
                result.label(),
                pool.mirrored(result)
            );
        }
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines.
pub(super) fn histogram_series<const N: usize>(
    out: &mut String,
    name: &str,
    labels: &str,
    snapshot: &HistogramSnapshot<N>,
) {
    for (bound_ns, count) in snapshot.bounds_ns.iter().zip(snapshot.cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {count}",
            *bound_ns as f64 / 1e9
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
        snapshot.count
    );
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", snapshot.count);
}
