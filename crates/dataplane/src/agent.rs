//! `palisade agent`: follows the policy of one host through the API and keeps the kernel in step.
//!
//! Loop: long-poll `GET /palisade/v1/agents/{host}/policy?after=REV&wait=S`; on a new policy,
//! compile it, render it, apply it (see [`crate::apply`]) and report the revision with
//! `PUT /palisade/v1/agents/{host}/status`. Errors (API down or restarting, `nft` failing) are
//! retried with exponential backoff; the table in the kernel stays as it was meanwhile. The first
//! apply after start replaces whatever table of ours the kernel holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use palisade_core::policy::{HostPolicy, compile};
use reqwest::StatusCode;
use serde_json::json;

use crate::apply::{Applier, Outcome, Tools};

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080` or `https://palisade.example:8443`.
    pub api: String,
    pub host: String,
    pub api_key: String,
    /// Long-poll duration asked of the API, in seconds.
    pub wait: u64,
    pub tools: Tools,
    /// The CA certificate(s) (PEM) the API's HTTPS certificate must chain to; `None`: the
    /// platform's roots.
    pub ca_cert: Option<PathBuf>,
}

/// The agent's HTTP client. With `ca_cert`, an HTTPS server is trusted only if its certificate
/// chains to one of the certificates in that PEM file (the platform's roots are not used);
/// without, the platform's roots apply.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading the CA certificate {}", path.display()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("parsing the PEM certificates of {}", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a long-poll brought.
enum Fetched {
    /// A policy to apply, with its tag.
    New(HostPolicy, Option<String>),
    /// Nothing new to apply; the revision the API is at, if it said.
    Same(Option<i64>),
}

pub struct Agent {
    config: AgentConfig,
    client: reqwest::Client,
    applier: Applier,
    /// The revision applied last (`None` before the first apply).
    applied: Option<i64>,
    /// The API's tag of the policy applied last: sent as `If-None-Match`, so a revision that
    /// changes nothing for this host comes as a bodiless 304.
    etag: Option<String>,
    /// Whether the API has heard of `applied`.
    reported: bool,
}

impl Agent {
    pub fn new(config: AgentConfig) -> anyhow::Result<Agent> {
        let client = http_client(config.ca_cert.as_deref())?;
        let applier = Applier::new(config.tools.clone());
        Ok(Agent { config, client, applier, applied: None, etag: None, reported: false })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/palisade/v1/agents/{}/{tail}", self.config.api.trim_end_matches('/'), self.config.host)
    }

    fn auth(&self) -> String {
        format!("APIKey {}", self.config.api_key)
    }

    /// One long-poll.
    async fn fetch(&self) -> anyhow::Result<Fetched> {
        let mut request = self.client.get(self.url("policy")).header("Authorization", self.auth());
        if let Some(revision) = self.applied {
            request = request
                .query(&[("after", revision.to_string()), ("wait", self.config.wait.to_string())])
                .timeout(Duration::from_secs(self.config.wait + 15));
            if let Some(tag) = &self.etag {
                request = request.header("If-None-Match", tag);
            }
        } else {
            request = request.timeout(Duration::from_secs(30));
        }
        let response = request.send().await.context("asking the API for the policy")?;
        let revision = response.headers().get("x-policy-revision").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::Same(revision)),
            StatusCode::OK => {
                let tag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(Fetched::New(response.json().await.context("reading the policy")?, tag))
            }
            status => bail!("the API answered {status}: {}", response.text().await.unwrap_or_default()),
        }
    }

    /// The host's current policy, without waiting for a change and without applying it.
    pub async fn policy(&self) -> anyhow::Result<HostPolicy> {
        let response = self
            .client
            .get(self.url("policy"))
            .header("Authorization", self.auth())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("asking the API for the policy")?;
        let status = response.status();
        if status != StatusCode::OK {
            bail!("the API answered {status}: {}", response.text().await.unwrap_or_default());
        }
        response.json().await.context("reading the policy")
    }

    async fn report(&mut self) -> anyhow::Result<()> {
        let Some(revision) = self.applied else { return Ok(()) };
        let response = self
            .client
            .put(self.url("status"))
            .header("Authorization", self.auth())
            .json(&json!({"applied_revision": revision}))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("reporting the applied revision")?;
        if !response.status().is_success() {
            bail!("the API answered {} to the status report", response.status());
        }
        self.reported = true;
        Ok(())
    }

    /// Fetches, applies and reports once (waiting up to the long-poll time for a change).
    /// Returns the outcome of the apply, or `None` when nothing new came.
    pub async fn step(&mut self) -> anyhow::Result<Option<Outcome>> {
        if !self.reported {
            self.report().await?;
        }
        if self.applied.is_some() && !self.applier.table_present().await? {
            // The table was deleted or flushed behind our back: fetch the policy whole and
            // replace the table.
            tracing::warn!("the nftables table is gone or emptied; restoring it");
            self.applier.reset();
            self.applied = None;
            self.etag = None;
        }
        let (policy, tag) = match self.fetch().await? {
            Fetched::New(policy, tag) => (policy, tag),
            // The revision moved but nothing this host enforces changed: it is applied as it is.
            Fetched::Same(Some(revision)) if self.applied.is_some_and(|a| revision > a) => {
                tracing::debug!(revision, "policy unchanged for this host");
                self.applied = Some(revision);
                self.reported = false;
                self.report().await?;
                return Ok(Some(Outcome::Unchanged));
            }
            Fetched::Same(_) => return Ok(None),
        };
        let revision = policy.revision;
        let host = compile(&policy).map_err(|e| anyhow::anyhow!("the policy of revision {revision} is not enforceable: {e}"))?;
        let outcome = self.applier.apply(host).await.with_context(|| format!("applying revision {revision}"))?;
        match &outcome {
            Outcome::Unchanged => tracing::debug!(revision, "policy unchanged for this host"),
            Outcome::Replaced { bytes } => tracing::info!(revision, bytes, "replaced the nftables table"),
            Outcome::Updated { bytes, lines } => tracing::info!(revision, bytes, lines, "updated the nftables table"),
        }
        if !self.applier.last_flushes.is_empty() {
            tracing::info!(revision, deletions = self.applier.last_flushes.len(), "deleted conntrack entries of revoked flows");
        }
        self.applied = Some(revision);
        self.etag = tag;
        self.reported = false;
        self.report().await?;
        Ok(Some(outcome))
    }

    /// Runs until `stop` resolves.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(stop);
        let mut backoff = MIN_BACKOFF;
        tracing::info!(api = %self.config.api, host = %self.config.host, "agent started");
        loop {
            let step = tokio::select! {
                _ = &mut stop => return Ok(()),
                step = self.step() => step,
            };
            match step {
                Ok(_) => backoff = MIN_BACKOFF,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "agent step failed");
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
