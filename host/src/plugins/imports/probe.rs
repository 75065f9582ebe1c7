//! `switchyard:plugin/probe`: reaches only the endpoint under check. No
//! endpoint is under check outside a health check, so every probe made from
//! a balancer or recovery call is refused.

use crate::plugins::bindings::probe::{Host, HttpRequest, HttpResponse, ProbeError};
use crate::plugins::state::StoreState;

const NO_TARGET: &str = "no endpoint is under check";

impl Host for StoreState {
    fn http(&mut self, _request: HttpRequest) -> Result<HttpResponse, ProbeError> {
        Err(ProbeError::NotAllowed(NO_TARGET.to_string()))
    }

    fn tcp_connect(&mut self, _timeout_ms: u32) -> Result<u32, ProbeError> {
        Err(ProbeError::NotAllowed(NO_TARGET.to_string()))
    }
}
