//! One pooled PostgreSQL connection: a tokio-postgres client driven by the thread that uses it,
//! and the pipeline that sends a transaction's statements in as few round trips as it can.
//!
//! Why this shape: the store's interface is synchronous (closures over `&mut dyn Tx`, run on the
//! blocking pool), so each connection owns a single-threaded runtime and the calling thread
//! drives the socket itself during `block_on` — no hand-off to another thread per statement. On
//! top of that, statements whose result nobody reads (inserts of a new group, its rules and
//! tags, the audit row, the task update, `SAVEPOINT`, `NOTIFY`, even `BEGIN`) are queued and go
//! out together with the next statement that must answer, or with `COMMIT`: tokio-postgres
//! writes requests issued together back to back, and the server answers them in order. A task
//! that was some fifteen round trips is now four or five.
//!
//! What queuing changes: an error of a queued statement is reported by the next round trip (the
//! transaction then fails and rolls back, as before), never swallowed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use futures_util::future::{join, join_all};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// A parameter of a queued statement: owned, since the statement is sent after its caller returned.
pub(crate) type OwnedParam = Box<dyn ToSql + Sync + Send>;

/// A statement waiting for the next round trip.
pub(super) enum Queued {
    /// Simple-protocol text (`BEGIN`, `SAVEPOINT task`, …).
    Batch(String),
    /// A prepared statement with its parameters; its row count is not needed.
    Execute(Statement, Vec<OwnedParam>),
}

/// The connection's socket half (tokio-postgres' `Connection`), polled inline by round trips.
type Socket = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

pub(super) struct PgConn {
    /// This connection's own runtime (its IO driver): the socket is read and written only inside
    /// `block_on`, on the thread running the transaction.
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// Polled in the same `block_on` as the requests, as the synchronous client does (no task to
    /// wake in between); `None` once it ended.
    socket: Option<Socket>,
    /// Prepared statements of this connection, by SQL text.
    statements: HashMap<String, Statement>,
    /// When the last round trip ended (see `super::STALE_AFTER`).
    pub last_used: Instant,
}

impl PgConn {
    /// Connects and runs `setup` (session settings) before the connection is used.
    pub fn connect(config: &Config, setup: &str) -> Result<PgConn, tokio_postgres::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a single-threaded runtime");
        let (client, connection) = runtime.block_on(config.connect(NoTls))?;
        let mut conn =
            PgConn { runtime, client, socket: Some(Box::pin(connection)), statements: HashMap::new(), last_used: Instant::now() };
        conn.round_trip(Vec::new(), async |client| client.batch_execute(setup).await)?;
        Ok(conn)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The prepared statement of `sql` if this connection has prepared it already.
    pub fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements.get(sql).cloned()
    }

    pub fn remember(&mut self, sql: &str, statement: Statement) {
        self.statements.insert(sql.to_string(), statement);
    }

    /// One round trip: every statement of `queue` in order, then `last`; the first error wins.
    pub fn round_trip<T>(
        &mut self,
        queue: Vec<Queued>,
        last: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        let client = &self.client;
        let socket = &mut self.socket;
        let work = async move {
            // `join` polls the queue first: its requests are written before `last`'s.
            let queued = join_all(queue.iter().map(|item| async move {
                match item {
                    Queued::Batch(sql) => client.batch_execute(sql).await,
                    Queued::Execute(statement, params) => {
                        client.execute_raw(statement, params.iter().map(|p| p.as_ref() as &dyn ToSql)).await.map(|_| ())
                    }
                }
            }));
            let (queued, last) = join(queued, last(client)).await;
            queued.into_iter().collect::<Result<Vec<()>, _>>()?;
            last
        };
        let outcome = self.runtime.block_on(async move {
            let mut work = std::pin::pin!(work);
            std::future::poll_fn(|cx| {
                // The requests first (they queue their messages), then the socket (it writes
                // them and reads the answers), then the requests again with what came back.
                if let Poll::Ready(out) = work.as_mut().poll(cx) {
                    return Poll::Ready(out);
                }
                if let Some(connection) = socket.as_mut()
                    && let Poll::Ready(ended) = connection.as_mut().poll(cx)
                {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "PostgreSQL connection ended");
                    }
                    // Dropping it closes the requests' channel: they fail now instead of waiting.
                    *socket = None;
                }
                work.as_mut().poll(cx)
            })
            .await
        });
        self.last_used = Instant::now();
        outcome
    }
}

/// Boxes statement parameters for [`Queued::Execute`]: `owned![a, b, c]`.
macro_rules! owned {
    ($($value:expr),* $(,)?) => {
        vec![$(Box::new($value) as $crate::postgres::conn::OwnedParam),*]
    };
}
pub(crate) use owned;
