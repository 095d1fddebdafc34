//! The real binary as a child process, for what an in-process server cannot show: a crash, a
//! signal, the process-wide metrics, the TLS listener. `palisade serve` listens on a free port of
//! 127.0.0.1 with none of the test's own `PALISADE_*` variables (the flags say everything), writes
//! its output to a log file, and is killed if the test ends early.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().expect("local address").port()
}

/// `palisade serve` on the database that `database` names (`--data-dir D` or `--database-url U`),
/// without the test's `PALISADE_*` variables.
pub fn serve_command(database: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("PALISADE_") {
            command.env_remove(key);
        }
    }
    command.arg("serve").args(database).stdin(Stdio::null());
    command
}

/// SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("running kill -TERM");
    assert!(status.success(), "kill -TERM failed");
}

/// A `palisade serve` child process, killed if the test ends early.
pub struct ServeProcess {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl ServeProcess {
    /// [`serve_command`] on a free port, without a bootstrap key, with `extra` flags; its output
    /// goes to `log`.
    pub fn spawn(database: &[&str], extra: &[&str], log: PathBuf) -> ServeProcess {
        let port = free_port();
        let out = File::create(&log).expect("creating the server log");
        let err = out.try_clone().expect("cloning the log handle");
        let child = serve_command(database)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-bootstrap-key"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("starting palisade serve");
        ServeProcess { child: Some(child), port, log }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) until `ready`; panics with the log when the process exits first.
    async fn wait_until(&mut self, what: &str, mut ready: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !ready().await {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().expect("polling the server") {
                panic!("the server exited with {status} before {what}:\n{}", self.log_text());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the server did not get to {what}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `GET /healthz` answers 2xx.
    pub async fn wait_healthy(&mut self) {
        let (http, url) = (reqwest::Client::new(), format!("{}/healthz", self.base()));
        self.wait_until("becoming healthy", async || http.get(&url).send().await.is_ok_and(|r| r.status().is_success())).await;
    }

    /// Waits until the API port and `more` ports accept connections: each is bound before the
    /// server serves, so requests from then on are answered.
    pub async fn wait_listening(&mut self, more: &[u16]) {
        let ports: Vec<u16> = std::iter::once(self.port).chain(more.iter().copied()).collect();
        self.wait_until("listening", async || {
            for port in &ports {
                if tokio::net::TcpStream::connect(("127.0.0.1", *port)).await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// SIGKILL (`Child::kill`), then reap.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the server");
    }

    /// Waits (at most `timeout`) for the process to exit; returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().expect("polling the server") {
                self.child = None;
                return status;
            }
            assert!(started.elapsed() < timeout, "the server did not exit within {timeout:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit (at most 20 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        sigterm(self.pid());
        self.wait_exit(Duration::from_secs(20)).await
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
