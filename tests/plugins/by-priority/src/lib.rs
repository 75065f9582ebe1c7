//! A scripted balancer for the host's end-to-end tests: a request of class
//! Pn goes to the endpoint with id n (wrapping around a smaller pool), so
//! the endpoint that answers tells the test the class the host gave it.

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, Priority, RequestInfo};

/// Remembers the pushed ids.
#[derive(Debug, Default)]
pub struct ByPriority(Vec<EndpointId>);

impl Balancer for ByPriority {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.0 = endpoints.iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, request: &RequestInfo) -> Option<EndpointId> {
        let class = match request.priority {
            Priority::P0 => 0,
            Priority::P1 => 1,
            Priority::P2 => 2,
            Priority::P3 => 3,
            Priority::P4 => 4,
        };
        self.0.get(class % self.0.len().max(1)).copied()
    }
}

export_balancer!(ByPriority);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_n_goes_to_id_n() {
        let mut balancer = ByPriority::configure("{}").unwrap();
        balancer.set_endpoints(
            (0..5)
                .map(|id| Endpoint {
                    id,
                    address: format!("10.0.0.{id}:80"),
                    weight: 1,
                    zone: None,
                    labels: Vec::new(),
                })
                .collect(),
        );
        let request = RequestInfo {
            priority: Priority::P3,
            ..RequestInfo::default()
        };
        assert_eq!(balancer.pick(&request), Some(3));
    }
}
