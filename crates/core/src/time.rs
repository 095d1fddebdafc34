//! Points in time as Palisade stores and compares them: whole milliseconds since the unix epoch,
//! UTC. Rendering them in the contract's formats is the API's business (`palisade_api::time`);
//! reading the clock is the store's (`palisade_store::now_ms`), so this stays pure.

/// Milliseconds since 1970-01-01T00:00:00Z. Ordered as the instants are; negative before 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMs(pub i64);

impl From<UnixMs> for i64 {
    fn from(at: UnixMs) -> Self {
        at.0
    }
}
