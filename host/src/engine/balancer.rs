//! The balancer interface the engine sees, and the native round robin that
//! serves every pool without a plugin and every pick a plugin fails.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::endpoint::{EndpointId, EndpointSet};

/// A request's priority class, `P0` (critical) to `P4` (background).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Critical.
    P0,
    /// High.
    P1,
    /// Normal.
    #[default]
    P2,
    /// Low.
    P3,
    /// Background.
    P4,
}

impl Priority {
    /// Every class, P0 first.
    pub const ALL: [Priority; 5] = [
        Priority::P0,
        Priority::P1,
        Priority::P2,
        Priority::P3,
        Priority::P4,
    ];

    /// `p0` ... `p4`, as the config and metrics name it.
    pub fn name(self) -> &'static str {
        ["p0", "p1", "p2", "p3", "p4"][self as usize]
    }

    /// The class a header value names: `p0` to `p4` or `0` to `4`, in any
    /// case, surrounding spaces ignored; `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<Priority> {
        let value = value.trim_ascii();
        let digit = match value {
            [d] => *d,
            [p, d] if p.eq_ignore_ascii_case(&b'p') => *d,
            _ => return None,
        };
        match digit {
            b'0'..=b'4' => Some(Priority::ALL[usize::from(digit - b'0')]),
            _ => None,
        }
    }
}

/// What a balancer may know about the request it places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// The request's class.
    pub priority: Priority,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// The hash key: by the route's `hash_key`, the client's address by
    /// default.
    pub hash: Option<u64>,
}

/// One pick's input. The headers are lent, not copied: a plugin reads them
/// through the `request-header` import during the call.
#[derive(Debug)]
pub struct PickRequest<'a> {
    /// The request's scalars.
    pub info: RequestInfo,
    /// The request's headers.
    pub headers: RequestHeaders<'a>,
    /// Set by the balancer during a plugin rollout: which version placed
    /// the request, so its outcome is counted for that version.
    pub placement: Placement,
}

impl<'a> PickRequest<'a> {
    /// A pick of a request with `info` and `headers`.
    pub fn new(info: RequestInfo, headers: RequestHeaders<'a>) -> Self {
        PickRequest {
            info,
            headers,
            placement: Placement::NONE,
        }
    }
}

/// Which version of a plugin under rollout placed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedBy {
    /// The serving version.
    Live,
    /// The candidate.
    Candidate,
}

/// Where the outcomes of requests placed during a rollout are counted.
pub trait PlacementOutcomes: Send + Sync + fmt::Debug {
    /// Counts one forwarded attempt's outcome.
    fn record(&self, by: PlacedBy, latency_ns: u64, success: bool);
}

/// Who placed a request, while a rollout compares two versions of its
/// pool's balancer; empty otherwise (then recording costs a branch).
#[derive(Debug, Clone)]
pub struct Placement(Option<(Arc<dyn PlacementOutcomes>, PlacedBy)>);

impl Placement {
    /// Placed outside any rollout.
    pub const NONE: Placement = Placement(None);

    /// Placed by `by`, its outcome counted in `outcomes`.
    pub fn by(outcomes: Arc<dyn PlacementOutcomes>, by: PlacedBy) -> Self {
        Placement(Some((outcomes, by)))
    }

    /// Which version placed it, during a rollout.
    pub fn placed_by(&self) -> Option<PlacedBy> {
        self.0.as_ref().map(|(_, by)| *by)
    }

    /// Counts the outcome of the attempt it placed.
    pub fn record(&self, latency_ns: u64, success: bool) {
        if let Some((outcomes, by)) = &self.0 {
            outcomes.record(*by, latency_ns, success);
        }
    }
}

impl Default for Placement {
    fn default() -> Self {
        Placement::NONE
    }
}

/// A request's headers as the proxy holds them.
#[derive(Debug)]
pub enum RequestHeaders<'a> {
    /// Parsed into a map (requests served through hyper).
    Map(&'a mut http::HeaderMap),
    /// As they stand in the received head (the HTTP/1 fast path). A map is
    /// built from them only for a plugin that imports `request-header`.
    Raw(&'a [httparse::Header<'a>]),
}

/// Why a balancer gave no usable answer. The pool serves the request with its
/// native round robin either way; the balancer has already counted the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickFault {
    /// The plugin trapped (panic, memory cap, bad instruction).
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin ran past its time budget and was cut off; what the clock saw.
    #[error("{0}")]
    Timeout(String),
    /// The plugin answered an id that is not in the eligible set.
    #[error("picked endpoint id {0}, which is not in the eligible set")]
    OutOfSet(EndpointId),
    /// The plugin declined while endpoints were eligible.
    #[error("declined although endpoints were eligible")]
    Declined,
    /// The plugin could not be asked (quarantined, not loaded, no instance).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The host had no room for the plugin's instance: not the plugin's
    /// fault, never counted against it.
    #[error("{0}")]
    HostCapacity(String),
}

/// A balancing strategy as the engine sees it: native or a WASM plugin,
/// interchangeable.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Picks an eligible endpoint of `set`. Called on the request's own
    /// thread; must not block.
    fn pick(
        &self,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<EndpointId, PickFault>;
}

/// Plain round robin over the eligible set: the native fallback. Lock-free;
/// one relaxed atomic add per pick.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        set: &Arc<EndpointSet>,
        _request: &mut PickRequest<'_>,
    ) -> Result<EndpointId, PickFault> {
        if set.eligible.is_empty() {
            return Err(PickFault::Declined);
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(set.eligible[turn % set.eligible.len()])
    }
}
