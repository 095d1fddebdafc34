//! Store transactions from async code. The store is synchronous: its calls must not hold an async
//! runtime thread, except the embedded store's reads, which are tens of microseconds and never
//! wait for a writer (WAL), and so are cheaper on the calling thread than a hand-off to the
//! blocking pool and back.

use std::sync::Arc;

use palisade_store::{Database, Store, StoreError, Tx};

/// Runs `f` in a read transaction: inline on the embedded store, on the blocking pool otherwise.
pub async fn read<R, E, F>(store: &Arc<Database>, f: F) -> Result<R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    if store.reads_inline() {
        return store.read(f);
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.read(f)).await.map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
}

/// Runs `f` in a write transaction on the blocking pool; commits when it returns `Ok`.
pub async fn write<R, E, F>(store: &Arc<Database>, f: F) -> Result<R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.write(f)).await.map_err(|e| StoreError::Internal(format!("write task failed: {e}")))?
}
