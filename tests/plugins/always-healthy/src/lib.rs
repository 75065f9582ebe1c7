//! A health check that calls every endpoint healthy; the host's end-to-end tests load it as a wrong-world file for a balancer pool.

use switchyard_sdk::{export_health_check, Endpoint, HealthCheck, Verdict};

/// Judges every endpoint healthy without probing it.
#[derive(Debug, Default)]
pub struct AlwaysHealthy;

impl HealthCheck for AlwaysHealthy {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self)
    }

    fn check(&mut self, _target: &Endpoint) -> Verdict {
        Verdict::healthy("always healthy")
    }
}

export_health_check!(AlwaysHealthy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_healthy() {
        let verdict = AlwaysHealthy.check(&Endpoint::new(0, "10.0.0.0:80"));
        assert_eq!(verdict, Verdict::healthy("always healthy"));
    }
}
