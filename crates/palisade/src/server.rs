//! The HTTP server: accepts connections (plain or TLS), serves each with hyper's HTTP/1 under the
//! limits of [`ConnectionLimits`], and stops gracefully.
//!
//! Why not `axum::serve`: it sets no timer, so a client sending its headers at one byte a second,
//! or never sending its body, or keeping thousands of idle connections, holds them forever; and it
//! has no bound on open connections, so running out of file descriptors stalls every client.
//! Here:
//! - **idle** and **headers**: one watchdog per connection, fed by [`Watched`] reads, closes a
//!   kept-alive connection that starts no new request within the idle timeout, and one whose
//!   request head is not complete within the header timeout of its first byte. (hyper's own
//!   header-read timer would do the first, but it arms and disarms a timer in the runtime's shared
//!   wheel on every request: measurably slower under load than one coarse timer per connection.)
//! - **body**: the whole body within the body timeout of the request's head ([`BodyDeadline`],
//!   which the API's body reader honours), and no pause longer than that (tower-http's
//!   request-body timeout); the API answers 408 in the Gcore body;
//! - **connections**: at most `max_connections`; one more is accepted and closed at once, so the
//!   process never runs out of descriptors for the database or its listener;
//! - **shutdown**: on the stop signal the listener closes, the API is told (long-polls answer at
//!   once), every connection is asked to finish its request and close, and connections still open
//!   at the shutdown deadline are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use palisade_api::extract::BodyDeadline;

use crate::config::ConnectionLimits;

/// Connections refused because `max_connections` were open (logged at most once a second).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Serves `router` on `listener` until `stop` resolves, then shuts down within
/// `limits.shutdown_timeout`. `on_stop` runs when the stop signal arrives, before connections
/// are asked to close (the API uses it to answer its long-polls).
pub async fn serve<L>(mut listener: L, router: Router, limits: &ConnectionLimits, stop: impl Future<Output = ()>, on_stop: impl FnOnce())
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    let (header_timeout, idle_timeout, body_timeout) = (limits.header_timeout, limits.idle_timeout, limits.body_timeout);
    let mut last_refusal_log = Instant::now() - Duration::from_secs(1);
    tokio::pin!(stop);
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(io);
            let refused = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
            if last_refusal_log.elapsed() >= Duration::from_secs(1) {
                last_refusal_log = Instant::now();
                tracing::warn!(max_connections = limits.max_connections, refused, "connection refused: too many open connections");
            }
            continue;
        };
        let progress = Arc::new(Progress::default());
        let io = TokioIo::new(Watched { inner: io, progress: progress.clone() });
        let service = {
            let (router, progress) = (router.clone(), progress.clone());
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                progress.request_started();
                request.extensions_mut().insert(BodyDeadline(tokio::time::Instant::now() + body_timeout));
                let (router, progress) = (router.clone(), progress.clone());
                async move {
                    let response = router.oneshot(request).await;
                    progress.request_answered();
                    response
                }
            })
        };
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                why = progress.overdue(header_timeout, idle_timeout) => {
                    tracing::debug!(why, "closing a connection");
                }
            }
        });
    }
    drop(listener);
    on_stop();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(seconds = limits.shutdown_timeout.as_secs(), "connections still open at the shutdown deadline were closed");
        }
    }
}

/// Where a connection is in its current request, as far as its timeouts care.
struct Progress {
    /// When the first byte of a request head arrived; `None` while idle or in a request.
    head_started: Mutex<Option<Instant>>,
    /// Between the end of a request's head and its answer.
    in_request: AtomicBool,
    /// When the connection was opened or last answered a request.
    idle_since: Mutex<Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { head_started: Mutex::new(None), in_request: AtomicBool::new(false), idle_since: Mutex::new(Instant::now()) }
    }
}

impl Progress {
    fn bytes_read(&self) {
        if !self.in_request.load(Ordering::Relaxed) {
            let mut started = self.head_started.lock().unwrap_or_else(|e| e.into_inner());
            started.get_or_insert_with(Instant::now);
        }
    }

    fn request_started(&self) {
        self.in_request.store(true, Ordering::Relaxed);
        *self.head_started.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn request_answered(&self) {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// Resolves (saying why) once a request head has been arriving for longer than `header`, or
    /// the connection has waited for its next request for longer than `idle`.
    async fn overdue(&self, header: Duration, idle: Duration) -> &'static str {
        let step = (header.min(idle) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            tokio::time::sleep(step).await;
            if self.in_request.load(Ordering::Relaxed) {
                continue;
            }
            let started = *self.head_started.lock().unwrap_or_else(|e| e.into_inner());
            match started {
                Some(at) if at.elapsed() > header => return "request headers did not arrive in time",
                Some(_) => {}
                None if self.idle_since.lock().unwrap_or_else(|e| e.into_inner()).elapsed() > idle => return "idle",
                None => {}
            }
        }
    }
}

/// A connection's byte stream that tells its [`Progress`] when request bytes arrive.
struct Watched<T> {
    inner: T,
    progress: Arc<Progress>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
