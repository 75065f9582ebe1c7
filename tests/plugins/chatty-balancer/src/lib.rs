//! A hostile balancer for the host's end-to-end tests: logs four 64 KiB lines per pick (each starting with its number, so cut lines can be told apart), then picks the lowest id.

use switchyard_sdk::host::{log, LogLevel};
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Bytes of each line it logs.
pub const LINE_BYTES: usize = 64 * 1024;

/// Lines it logs per pick.
pub const LINES_PER_PICK: usize = 4;

/// The lowest id of the last pushed set, and the lines logged so far.
#[derive(Debug, Default)]
pub struct ChattyBalancer {
    lowest: Option<EndpointId>,
    logged: u64,
}

impl Balancer for ChattyBalancer {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.lowest = endpoints.iter().map(|e| e.id).min();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        for _ in 0..LINES_PER_PICK {
            self.logged += 1;
            let mut line = format!("chatty line {} ", self.logged);
            line.extend(std::iter::repeat_n('z', LINE_BYTES - line.len()));
            log(LogLevel::Warn, &line);
        }
        self.lowest
    }
}

export_balancer!(ChattyBalancer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lowest_id_and_counts_its_lines() {
        let mut balancer = ChattyBalancer::configure("{}").unwrap();
        balancer.set_endpoints(vec![Endpoint::new(5, "a:80"), Endpoint::new(2, "b:80")]);
        assert_eq!(balancer.pick(&RequestInfo::default()), Some(2));
        assert_eq!(balancer.logged, LINES_PER_PICK as u64);
    }
}
