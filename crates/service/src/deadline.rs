//! When work that can be large must have ended. Its loops check the [`Deadline`] between steps
//! (questions, ports, groups; a single SQL statement is not interrupted), so work whose answer
//! nobody waits for any more stops soon after.

use std::time::Duration;

use tokio::time::Instant;

use crate::ops::{OpError, OpResult};

/// A point in time. Cheap to copy and to check.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(duration: Duration) -> Deadline {
        Deadline(Instant::now() + duration)
    }

    pub fn instant(&self) -> Instant {
        self.0
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.0
    }

    /// [`OpError::DeadlineExceeded`] once the deadline has passed.
    pub fn check(&self) -> OpResult<()> {
        if self.expired() { Err(OpError::DeadlineExceeded) } else { Ok(()) }
    }

    /// Checks every `every`-th step of a loop only (an `Instant::now()` costs tens of
    /// nanoseconds: cheap, but not free in the innermost loops).
    pub fn check_every(&self, step: usize, every: usize) -> OpResult<()> {
        if step.is_multiple_of(every.max(1)) { self.check() } else { Ok(()) }
    }
}
