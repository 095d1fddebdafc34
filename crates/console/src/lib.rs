//! The web console: plain HTML, CSS and JavaScript (no framework, no build step) embedded in the
//! binary with `include_bytes!` and served at `/console` on the API's own listener.
//!
//! This crate owns the console's assets (`assets/`) and the handlers that serve them. Every answer,
//! 404s included, carries a strict Content-Security-Policy (scripts, styles, images and
//! connections from this origin only; no inline script or style, no `eval`, no framing, no form
//! submission), `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.
//!
//! It must not depend on the API, store or core crates: the console is a client of the public API
//! like any other, calling it from the browser with the user's key in the `Authorization` header.
//! The API crate mounts [`index`] and [`asset`] in its router (or [`router`] serves them alone).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of every console response. `form-action 'none'`: forms are handled by script and
/// never submitted by the browser, so a key typed into a form can never end up in a URL.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file, served at `/console/{path}`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../assets/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/groups.js", JS),
    asset!("js/group.js", JS),
    asset!("js/pages.js", JS),
    asset!("js/platform.js", JS),
];

/// The asset served at `/console/{path}`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /console`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(find("index.html"), &headers)
}

/// `GET /console/{*path}`: an asset (the page itself for an empty path), or a 404.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let path = path.trim_start_matches('/');
    serve(if path.is_empty() { find("index.html") } else { find(path) }, &headers)
}

/// The console on its own, for tests and for embedding elsewhere.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/console", get(index)).route("/console/{*path}", get(asset))
}

/// A strong validator: FNV-1a of the content, computed once per request (the assets are small).
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

fn serve(asset: Option<&'static Asset>, headers: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return secured((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Not found\n").into_response());
    };
    let tag = etag(asset.body);
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex is a valid header value"));
    // Revalidate every time: a new binary's assets are picked up at once, an unchanged one costs a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(response)
}

/// The security headers of every console response.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin"));
    h.insert(HeaderName::from_static("permissions-policy"), HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).unwrap_or_else(|_| panic!("{} is not UTF-8", asset.path))
    }

    fn assert_secured(response: &Response, what: &str) {
        let h = response.headers();
        let csp = h.get(header::CONTENT_SECURITY_POLICY).unwrap_or_else(|| panic!("{what}: no CSP")).to_str().unwrap();
        for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{what}: CSP lacks {directive}");
        }
        for weak in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*", "data:"] {
            assert!(!csp.contains(weak), "{what}: CSP allows {weak}");
        }
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff", "{what}");
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY", "{what}");
    }

    #[tokio::test]
    async fn every_answer_carries_the_policy() {
        let none = HeaderMap::new();
        let page = index(none.clone()).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_secured(&page, "/console");
        for a in ASSETS {
            let response = asset(Path(a.path.to_string()), none.clone()).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(response.headers()[header::CONTENT_TYPE], a.content_type, "{}", a.path);
            assert_secured(&response, a.path);
            // A revalidation of an unchanged asset is a 304, still with the policy.
            let mut conditional = HeaderMap::new();
            conditional.insert(header::IF_NONE_MATCH, response.headers()[header::ETAG].clone());
            let again = asset(Path(a.path.to_string()), conditional).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", a.path);
            assert_secured(&again, a.path);
        }
        for missing in ["nothing.js", "../Cargo.toml", "js/", "assets/index.html"] {
            let response = asset(Path(missing.to_string()), none.clone()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
            assert_secured(&response, missing);
        }
        assert_eq!(asset(Path(String::new()), none).await.status(), StatusCode::OK);
    }

    /// Nothing is loaded from, linked to or sent to another origin, and nothing needs a weaker policy.
    #[test]
    fn assets_are_self_contained() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 300 * 1024, "the console's assets weigh {total} bytes");
        for a in ASSETS {
            let body = text(a);
            // The one absolute URL allowed: the SVG namespace, which is a name, not a request.
            let scrubbed = body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            let lower = scrubbed.to_lowercase();
            for external in ["http:", "https:", "://", "@import", "fonts.googleapis"] {
                assert!(!lower.contains(external), "{} mentions {external}", a.path);
            }
            // Protocol-relative URLs (`"//host/x"`, `url(//host)`).
            for opening in ["\"//", "'//", "`//", "(//", "=//"] {
                assert!(!lower.contains(opening), "{} has a protocol-relative URL", a.path);
            }
            if a.path.ends_with(".css") {
                assert!(!lower.contains("url("), "{} loads a url()", a.path);
            }
            if a.path.ends_with(".js") {
                for unsafe_sink in
                    ["eval(", "new function", "innerhtml", "outerhtml", "insertadjacenthtml", "document.write", "console.log"]
                {
                    assert!(!lower.contains(unsafe_sink), "{} uses {unsafe_sink}", a.path);
                }
                // Module imports stay within the console.
                for (i, _) in body.match_indices(" from \"") {
                    assert!(body[i + 7..].starts_with("./"), "{}: an import from outside the console", a.path);
                }
                assert!(!body.contains("import("), "{}: a dynamic import", a.path);
            }
            if a.path.ends_with(".html") {
                assert!(!lower.contains(" style="), "{} has an inline style", a.path);
                for (i, _) in lower.match_indices(" on") {
                    let name: String = lower[i + 3..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                    assert!(!lower[i + 3 + name.len()..].starts_with('='), "{}: an inline event handler on{name}=", a.path);
                }
                let mut rest = lower.as_str();
                while let Some(i) = rest.find("<script") {
                    let tag_end = rest[i..].find('>').unwrap() + i;
                    assert!(rest[i..tag_end].contains("src=\"/console/"), "{}: an inline or foreign script", a.path);
                    assert!(rest[tag_end + 1..].starts_with("</script>"), "{}: a script with inline content", a.path);
                    rest = &rest[tag_end..];
                }
                let outside: Vec<&str> =
                    lower.split(['"', '\'']).filter(|s| s.starts_with('/') && !s.starts_with("/console/") && *s != "/docs").collect();
                assert!(outside.is_empty(), "{} refers to {outside:?} outside the console", a.path);
            }
        }
    }

    /// Every file under assets/ is embedded, and every embedded path the page refers to exists.
    #[test]
    fn every_file_is_embedded_and_every_reference_resolves() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        for file in &files {
            assert!(find(file).is_some(), "assets/{file} is not in ASSETS");
        }
        assert_eq!(files.len(), ASSETS.len());
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".html") || a.path.ends_with(".js")) {
            for reference in text(a).split(['"', '\'']).filter_map(|s| s.strip_prefix("/console/")) {
                if !reference.is_empty() && !reference.contains(['#', '?', '$', '{']) {
                    assert!(find(reference).is_some(), "{} refers to /console/{reference}, which is not embedded", a.path);
                }
            }
            for import in text(a).split("from \"./").skip(1) {
                let target = import.split('"').next().unwrap();
                let dir = a.path.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
                assert!(find(&format!("{dir}{target}")).is_some(), "{} imports ./{target}, which is not embedded", a.path);
            }
        }
    }
}
