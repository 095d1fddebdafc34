//! A minimal HTTP/1.1 client: one keep-alive connection per target per worker, requests sent one
//! after another on it. No pool, no locks, no TLS: the load generator is meant to share two cores
//! with the server it measures, so it must cost as little as possible.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One server to send requests to.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: HeaderValue,
    /// Path prefix of the base URL, without a trailing slash (usually empty).
    pub base: String,
}

impl Target {
    /// Parses `http://host:port[/prefix]` and resolves it. Only loopback addresses are accepted
    /// unless `allow_remote`.
    pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{url}: only plain http:// is supported (scheme {other})"),
            None => bail!("{url}: the URL needs a scheme (http://)"),
        }
        let host = uri.host().ok_or_else(|| anyhow!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host_for_lookup.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host_for_lookup, port)).await.with_context(|| format!("resolving {host}"))?.collect(),
        };
        let addr = if allow_remote {
            *addrs.first().ok_or_else(|| anyhow!("{host} resolves to no address"))?
        } else {
            // Every address the name resolves to must be loopback: never send load elsewhere by accident.
            if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
                bail!("refusing non-loopback target {url} ({addrs:?}); pass --allow-remote to load a remote server");
            }
            addrs[0]
        };
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_else(|| host.to_string());
        Ok(Target { addr, authority: HeaderValue::from_str(&authority)?, base: uri.path().trim_end_matches('/').to_string() })
    }
}

/// A worker's client: a connection to each target, used round-robin request by request.
pub struct Client {
    targets: Arc<Vec<Target>>,
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    auth: HeaderValue,
    next: usize,
    /// How many requests this client sent (successful or not).
    pub requests: u64,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("response is not JSON: {}", self.snippet()))
    }

    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned()
    }

    /// Fails unless the status is `expected`.
    pub fn expect(self, expected: StatusCode, what: &str) -> anyhow::Result<Response> {
        if self.status != expected {
            bail!("{what}: HTTP {} {}", self.status.as_u16(), self.snippet());
        }
        Ok(self)
    }
}

impl Client {
    /// `start` picks the first target, so that workers begin on different nodes.
    pub fn new(targets: Arc<Vec<Target>>, api_key: &str, start: usize) -> anyhow::Result<Client> {
        let n = targets.len();
        Ok(Client {
            targets,
            conns: (0..n).map(|_| None).collect(),
            auth: HeaderValue::from_str(&format!("APIKey {api_key}"))?,
            next: start,
            requests: 0,
        })
    }

    async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request (to the next target in turn) and reads the whole response.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Response> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Client::send`] with extra request headers (`If-None-Match`, ...).
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&'static str, HeaderValue)],
    ) -> anyhow::Result<Response> {
        let i = self.next % self.targets.len();
        self.next = self.next.wrapping_add(1);
        self.requests += 1;
        let target = &self.targets[i];
        // A connection the server closed is replaced before the request goes out, so nothing is
        // sent twice.
        let usable = match self.conns[i].as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.conns[i] = Some(Self::connect(target).await?);
        }
        let sender = self.conns[i].as_mut().expect("connected above");
        let uri = if target.base.is_empty() { path.to_string() } else { format!("{}{path}", target.base) };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, target.authority.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                self.conns[i] = None;
                return Err(e.into());
            }
        };
        let status = response.status();
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response { status, headers: parts.headers, body })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Response> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &serde_json::Value) -> anyhow::Result<Response> {
        self.send(Method::POST, path, Some(Bytes::from(serde_json::to_vec(body)?))).await
    }

    pub async fn delete(&mut self, path: &str) -> anyhow::Result<Response> {
        self.send(Method::DELETE, path, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_unless_allowed() {
        let local = Target::resolve("http://127.0.0.1:8080/base/", false).await.expect("loopback is fine");
        assert_eq!(local.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(local.base, "/base");
        assert_eq!(local.authority, "127.0.0.1:8080");
        assert!(Target::resolve("http://[::1]:9000", false).await.is_ok());
        assert!(Target::resolve("http://localhost:9000", false).await.is_ok());
        let refused = Target::resolve("http://10.0.0.1:8080", false).await.expect_err("private address refused");
        assert!(refused.to_string().contains("--allow-remote"), "{refused}");
        assert!(Target::resolve("http://192.0.2.1:8080", false).await.is_err());
        // Allowed explicitly (nothing is sent: resolving a literal address does no I/O).
        assert!(Target::resolve("http://192.0.2.1:8080", true).await.is_ok());
        assert!(Target::resolve("https://127.0.0.1", false).await.is_err(), "no TLS");
        assert!(Target::resolve("127.0.0.1:8080", false).await.is_err(), "a scheme is required");
    }
}
