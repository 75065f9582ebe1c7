//! A hostile balancer for the host's end-to-end tests: `pick` never returns, so the host's time budget must stop it.

use std::hint::black_box;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, RequestInfo};

/// Keeps the pushed ids only so that `pick` has something to (never) return.
#[derive(Debug, Default)]
pub struct LoopingBalancer(Vec<EndpointId>);

impl Balancer for LoopingBalancer {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.0 = endpoints.iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        // A host call per turn and an opaque, impossible exit: the optimizer
        // can neither hoist nor remove the loop.
        while black_box(host::now_ns()) != black_box(u64::MAX) {}
        self.0.first().copied()
    }
}

export_balancer!(LoopingBalancer);
