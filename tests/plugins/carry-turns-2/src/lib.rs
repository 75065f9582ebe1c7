//! `carry-turns` with snapshot format 2: it refuses the state of format 1,
//! as a new version whose state changed shape would.

/// The snapshot format this build writes and reads.
pub const FORMAT: u8 = 2;

#[path = "../../carry-turns/src/turns.rs"]
pub mod turns;

switchyard_sdk::export_balancer!(turns::CarryTurns);
