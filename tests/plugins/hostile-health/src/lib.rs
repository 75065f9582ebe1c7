//! A hostile health check for the host's end-to-end tests: it loops forever
//! when checking the endpoint with id 0, panics on id 1, and passes the rest
//! after a real TCP probe. Neither fault may mark an endpoint down or stall
//! other checks.

use std::hint::black_box;

use switchyard_sdk::{export_health_check, host, probe, Endpoint, HealthCheck, Verdict};

/// Stateless.
#[derive(Debug, Default)]
pub struct HostileHealth;

impl HealthCheck for HostileHealth {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(HostileHealth)
    }

    fn check(&mut self, target: &Endpoint) -> Verdict {
        match target.id {
            0 => loop {
                if black_box(host::now_ns()) == black_box(u64::MAX) {
                    return Verdict::healthy("never");
                }
            },
            1 => panic!("hostile-health panics on endpoint 1"),
            _ => match probe::tcp_connect(500) {
                Ok(micros) => Verdict::healthy(format!("connected in {micros} µs")),
                Err(error) => Verdict::unhealthy(error.to_string()),
            },
        }
    }
}

export_health_check!(HostileHealth);
