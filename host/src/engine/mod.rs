//! Routes, pools, endpoints and their live statistics: everything a request
//! needs to find its endpoint, in plain Rust (no wasmtime here).
//!
//! Request path: [`Routes::find`] → the route's [`RateLimit`] →
//! [`Pool::pick`] (the pool's [`Balancer`], falling back to the native round
//! robin) → an [`Endpoint`] whose [`EndpointStats`] the proxy updates with
//! the outcome.

mod admission;
mod balancer;
mod checker;
mod endpoint;
mod events;
mod health;
mod histogram;
mod pool;
mod rate_limit;
mod recovery;
mod route;
mod topology;

pub use admission::{
    AdaptiveSettings, Admission, AdmissionSettings, AdmissionView, NotStarted, ShedReason,
};
pub use balancer::{
    Balancer, PickFault, PickRequest, PlacedBy, Placement, PlacementOutcomes, Priority,
    RequestHeaders, RequestInfo, RoundRobin,
};
pub use checker::{
    check_once, spawn_checks, CheckFuture, CheckOutcome, CheckSchedule, HealthChecker, TcpCheck,
};
pub use endpoint::{
    Admin, Endpoint, EndpointId, EndpointSet, EndpointStats, InFlightGuard, LoadSnapshot,
    ResolvedAddrs, Source,
};
pub use events::{Event, Events};
pub(crate) use health::unix_ms;
pub use health::{
    eligibility, eligibility_with_out, Alert, Alerts, Eligibility, EndpointHealth, Health,
    HealthPolicy, OutlierPolicy, Severity,
};
pub use histogram::{
    ClassHistograms, Histogram, HistogramSnapshot, PLUGIN_CALL_BOUNDS_NS, REQUEST_BOUNDS_NS,
};
pub use pool::{
    MirrorResult, Pool, PoolHealthView, Recovery, TickQueue, UpstreamProtocol, UpstreamTls,
};
pub use rate_limit::{Limited, RateKey, RateLimit};
pub use recovery::{Decision, Failure, FailureKind, RecoveryPolicy, Retry, RetryBudget, RetryOnce};
pub use route::{
    hash_bytes, mix64, FieldMatch, FieldTest, Fields, HashKey, HeaderEdits, HostMatch, Mirror,
    PathMatch, PathRewrite, Rewrite, Route, RouteRequest, Routes, Split,
};
pub use topology::{SharedTopology, Topology};

#[cfg(test)]
mod tests;
