//! The balancer both `carry-turns` crates build, each with its own
//! snapshot format (`crate::FORMAT`).

use serde::Deserialize;
use switchyard_sdk::{config, store, Balancer, Endpoint, EndpointId, RequestInfo};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Snapshot nothing until the first pick, so a fresh pool (all a load
    /// check sees) carries nothing and only a worker's swap restores.
    empty_when_fresh: bool,
}

/// Takes turns over the pushed endpoints; its place is its state, and it
/// counts the pool's picks in the store.
#[derive(Debug, Default)]
pub struct CarryTurns {
    empty_when_fresh: bool,
    endpoints: Vec<EndpointId>,
    next: u64,
}

impl Balancer for CarryTurns {
    fn configure(config: &str) -> Result<Self, String> {
        let options: Options = config::parse(config)?;
        Ok(CarryTurns {
            empty_when_fresh: options.empty_when_fresh,
            ..Default::default()
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.endpoints = endpoints.into_iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let len = self.endpoints.len().max(1) as u64;
        let id = *self.endpoints.get((self.next % len) as usize)?;
        self.next += 1;
        // Every worker's picks, counted in the pool's store.
        let _ = store::add(None, "picks", 1);
        Some(id)
    }

    fn snapshot(&mut self) -> Vec<u8> {
        if self.empty_when_fresh && self.next == 0 {
            return Vec::new();
        }
        let mut state = vec![crate::FORMAT];
        state.extend_from_slice(&self.next.to_le_bytes());
        state
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        match state.split_first() {
            Some((&format, next)) if format == crate::FORMAT => {
                let next: [u8; 8] = next
                    .try_into()
                    .map_err(|_| format!("expected 8 bytes of place, got {}", next.len()))?;
                self.next = u64::from_le_bytes(next);
                Ok(())
            }
            Some((&format, _)) => Err(format!(
                "a snapshot of format {format}; this version reads format {}",
                crate::FORMAT
            )),
            None => Err("an empty snapshot".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_is_carried_and_another_format_refused() {
        let mut turns = CarryTurns::configure("{}").unwrap();
        turns.set_endpoints(switchyard_sdk::testing::endpoints(3));
        turns.pick(&RequestInfo::default());
        let state = turns.snapshot();
        let mut next = CarryTurns::configure("{}").unwrap();
        next.set_endpoints(switchyard_sdk::testing::endpoints(3));
        next.restore(&state).unwrap();
        assert_eq!(next.pick(&RequestInfo::default()), Some(1));
        let mut other = state.clone();
        other[0] = crate::FORMAT + 1;
        assert!(next.restore(&other).unwrap_err().contains("format"));
    }

    #[test]
    fn a_fresh_pool_can_carry_nothing() {
        let mut turns = CarryTurns::configure(r#"{"empty_when_fresh": true}"#).unwrap();
        assert!(turns.snapshot().is_empty());
    }
}
