//! Fair CPU: work that can be large — flow verdicts, effective rules, analysis, big list pages,
//! the agents' policy builds — runs on a small pool of threads of its own (as many as there are
//! cores), never on the async runtime's threads, and within a per-request deadline
//! (`--request-deadline-ms`). The runtime's threads stay free for the cheap requests (GET one
//! group, `/healthz`), which keep their inline SQLite fast path (`AppState::read`). Requests
//! reach the pool through `AppState::heavy` and `AppState::read_heavy`.
//!
//! Why threads of its own rather than tokio's blocking pool behind a semaphore: the pool's
//! threads run at a lower CPU priority (`nice` +10), so when heavy work and cheap requests want
//! the same cores the kernel runs the cheap requests first, and heavy work gets what is left. A
//! thread of tokio's blocking pool also runs writes and could not be given its priority back
//! (raising a priority needs `CAP_SYS_NICE`). The measurements are in docs/benchmarks.md ("Fair
//! CPU"): under the same attack, another tenant's GET p99 was 9–40 ms with a semaphore over the
//! blocking pool, 6–27 ms with this pool (the target is 20 ms).
//!
//! A request whose deadline passes — waiting in the queue or while its work runs — answers 504 at
//! once. Queued work whose deadline has passed, or whose request is gone, is skipped; running
//! work checks the [`Deadline`] in its loops (between questions, ports or groups; a single SQL
//! statement is not interrupted) and stops soon after, so timed-out work never piles up.

pub use palisade_service::deadline::Deadline;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::error::{ApiError, Result};

/// How much lower than the rest of the process the pool's threads run (`nice` steps; +10 is a
/// tenth of the CPU share of a normal thread when both want the core).
const HEAVY_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The threads heavy work runs on; they end when the pool is dropped.
pub struct HeavyPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    size: usize,
    busy: Arc<AtomicUsize>,
}

impl HeavyPool {
    pub fn new(size: usize) -> HeavyPool {
        let size = size.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..size {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new().name(format!("palisade-heavy-{n}")).spawn(move || {
                lower_priority();
                loop {
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panic ends the job (its request answers 500), not the thread.
                        Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a heavy-work thread");
            }
        }
        HeavyPool { jobs: Mutex::new(sender), size, busy: Arc::default() }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().map_err(|_| ApiError::Internal("heavy pool lock poisoned".into()))?;
        jobs.send(job).map_err(|_| ApiError::Internal("the heavy pool has stopped".into()))
    }
}

/// Lowers the calling thread's CPU priority (Linux applies `setpriority(PRIO_PROCESS, 0)` to the
/// calling thread only). Failing to is not fatal: the pool still bounds the work.
fn lower_priority() {
    // SAFETY: a plain system call on the calling thread, no memory is passed.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HEAVY_NICE) };
    if done != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "lowering the heavy-work thread's priority");
    }
}

/// The number of cores this process may use: the default size of the pool.
pub fn default_pool_size() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Counts a running job while alive.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HeavyPool {
    /// Runs `f` on the pool within `deadline`: 504 when the deadline passes first (time in the
    /// queue included).
    pub async fn run<R, F>(&self, deadline: Deadline, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Deadline) -> Result<R> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let busy = self.busy.clone();
        let span = tracing::Span::current();
        self.submit(Box::new(move || {
            // Nobody waits for it any more (the client left, or the deadline passed in the queue).
            if answer.is_closed() || deadline.expired() {
                return;
            }
            busy.fetch_add(1, Ordering::Relaxed);
            let _running = Running(busy);
            let _entered = span.enter();
            let _ = answer.send(f(deadline));
        }))?;
        match tokio::time::timeout_at(deadline.instant(), answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) if deadline.expired() => Err(ApiError::DeadlineExceeded),
            Ok(Err(_)) => Err(ApiError::Internal("heavy work failed".into())),
            Err(_) => Err(ApiError::DeadlineExceeded),
        }
    }
}

/// A JSON body already serialised (on the pool), answered as `application/json`.
pub fn json_bytes(bytes: Vec<u8>) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut response = bytes.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serialises `value` to JSON bytes (on the pool, so the runtime's threads never do it).
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ApiError::Internal(format!("serialising the answer: {e}")))
}
