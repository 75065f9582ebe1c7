//! A scripted recovery policy for the host's end-to-end tests: ejects an
//! endpoint for a minute when it answers a gRPC call with UNAVAILABLE (14),
//! and gives up on every other failure, so a test sees that the policy was
//! told the gRPC status itself.

use switchyard_sdk::{export_recovery, Decision, Ejection, Failure, FailureKind, Recovery};

/// gRPC's UNAVAILABLE.
const UNAVAILABLE: u32 = 14;

/// No state: each decision stands alone.
#[derive(Debug, Default)]
pub struct EjectOnGrpc;

impl Recovery for EjectOnGrpc {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(EjectOnGrpc)
    }

    fn on_failure(&mut self, failure: &Failure) -> Decision {
        match failure.kind {
            FailureKind::GrpcStatus(UNAVAILABLE) => Decision::Eject(Ejection {
                duration_ms: 60_000,
                retry: None,
            }),
            _ => Decision::GiveUp(None),
        }
    }
}

export_recovery!(EjectOnGrpc);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::RequestInfo;

    fn failure(kind: FailureKind) -> Failure {
        Failure {
            endpoint: 1,
            kind,
            request: RequestInfo::default(),
            method: "POST".into(),
            replayable: false,
            elapsed_ms: 1,
        }
    }

    #[test]
    fn only_grpc_unavailable_ejects() {
        let mut policy = EjectOnGrpc;
        assert!(matches!(
            policy.on_failure(&failure(FailureKind::GrpcStatus(14))),
            Decision::Eject(_)
        ));
        assert_eq!(
            policy.on_failure(&failure(FailureKind::Status(503))),
            Decision::GiveUp(None)
        );
        assert_eq!(
            policy.on_failure(&failure(FailureKind::GrpcStatus(13))),
            Decision::GiveUp(None)
        );
    }
}
