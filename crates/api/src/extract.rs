//! Request extractors: the authenticated caller, JSON bodies and query strings, each failing
//! with the contract's error body instead of axum's plain-text rejections.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_core::group::Scope;
use palisade_service::policy::Viewer;
use palisade_store::KeyRole as Role;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::state::AppState;

/// Who is calling: the owner of the API key in `Authorization: APIKey <token>`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub role: Role,
    /// The tenant's client; 0 for platform and agent keys.
    pub client_id: i64,
    pub user_id: i64,
    /// The projects a tenant key is limited to (`None`: all of its client's).
    pub projects: Option<Vec<i64>>,
    /// The host of an agent key.
    pub host: Option<String>,
}

impl Caller {
    /// Whether this key may see project `project_id` (of its client, for a tenant key).
    pub fn may_use_project(&self, project_id: i64) -> bool {
        self.projects.as_ref().is_none_or(|projects| projects.contains(&project_id))
    }

    /// What this key sees, as the service's reads take it.
    pub fn viewer(&self) -> Viewer {
        Viewer { client_id: self.client_id, projects: self.projects.clone() }
    }

    /// An agent key may speak only for its own host (403 for any other).
    pub fn require_host(&self, host: &str) -> Result<()> {
        match &self.host {
            Some(own) if own == host => Ok(()),
            _ => Err(ApiError::Forbidden(format!("This API key may not act for host {host}"))),
        }
    }

    /// The client a platform request names with `?client_id=N` (400 when missing), or the
    /// tenant's own client.
    pub fn client_for(&self, query: &Query) -> Result<i64> {
        if self.role != Role::Platform {
            return Ok(self.client_id);
        }
        let mut errors = palisade_core::FieldErrors::new();
        let client = query.int("client_id", 1, i64::MAX, &mut errors);
        match client {
            Some(client) => Ok(client),
            None if errors.is_empty() => Err(ApiError::invalid("client_id", "Field required: the client whose data this is")),
            None => Err(errors.into()),
        }
    }

    /// The scope of a project/region path, if this key may use the project and the region exists.
    pub fn scope(&self, state: &AppState, project_id: i64, region_id: i64) -> Result<Scope> {
        if let Some(projects) = &self.projects {
            if !projects.contains(&project_id) {
                return Err(ApiError::Forbidden(format!("This API key is not allowed to access project {project_id}")));
            }
        }
        if state.region_name(region_id).is_none() {
            return Err(ApiError::not_found(format!("Region {region_id} could not be found")));
        }
        Ok(Scope { client_id: self.client_id, project_id, region_id })
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller> {
        // Authenticated once by the role middleware (`access::authorize`).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthenticated("Authentication credentials were not provided.".into()));
        };
        let header = header.to_str().unwrap_or_default();
        // Split at the first space; the scheme is case-insensitive and the token is the rest.
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("apikey") || token.is_empty() {
            return Err(ApiError::Unauthenticated("Authentication credentials were not provided.".into()));
        }
        match state.verify_token(token).await? {
            Some(key) => Ok(Caller {
                key_id: key.id,
                role: key.role,
                client_id: key.client_id,
                user_id: key.user_id,
                projects: key.projects,
                host: key.host,
            }),
            None => {
                let shown: String = token.chars().take(6).collect();
                Err(ApiError::Unauthenticated(format!("Bad permanent token: {shown}...")))
            }
        }
    }
}

/// The most bytes a request's body may have (`max_body_bytes`), put on the request by
/// [`limit_body`].
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

fn body_too_large(limit: Option<BodyLimit>) -> ApiError {
    let limit = limit.map(|BodyLimit(bytes)| format!(" of {bytes} bytes")).unwrap_or_default();
    ApiError::PayloadTooLarge(format!("The request body is larger than the limit{limit} (max_body_bytes)"))
}

/// On every route: a body whose `Content-Length` is over `max_body_bytes` is a 413 before any
/// of it is read. A body without a length (chunked) is cut at the same limit while it is read
/// (axum's `DefaultBodyLimit`, set in [`crate::router`]) and refused the same way by [`JsonBody`].
pub async fn limit_body(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let limit = BodyLimit(state.config.max_body_bytes);
    let announced = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit.0 as u64) {
        return body_too_large(Some(limit)).into_response();
    }
    request.extensions_mut().insert(limit);
    next.run(request).await
}

/// When the request's body must have arrived in full (set by the HTTP server from its body
/// timeout; a request without it has no deadline of its own).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub tokio::time::Instant);

/// A JSON body. An empty body (no bytes, or only whitespace) is `Value::Null`: the SDK sends
/// body-less POSTs with a JSON content type, and every handler reads it as "no fields". A body
/// that *is* the JSON `null` is refused (400 naming `body`): no body of the contract is nullable.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody> {
        let limit = request.extensions().get::<BodyLimit>().copied();
        let deadline = request.extensions().get::<BodyDeadline>().map(|d| d.0);
        let read = Bytes::from_request(request, state);
        let read = match deadline {
            // The whole body, not each piece of it: a client sending a byte a second never
            // stalls long enough for an idle timeout, but it misses this one.
            Some(at) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| ApiError::RequestTimeout("The request body did not arrive in time".into()))?,
            None => read.await,
        };
        let bytes = read.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => body_too_large(limit),
            _ if is_body_timeout(&e) => ApiError::RequestTimeout("The request body did not arrive in time".into()),
            _ => ApiError::invalid("body", format!("Could not read the request body: {e}")),
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Null));
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Null) => Err(ApiError::invalid("body", "Input should be a valid dictionary or object, not null")),
            Ok(value) => Ok(JsonBody(value)),
            Err(e) => Err(ApiError::invalid("body", format!("Invalid JSON: {e}"))),
        }
    }
}

/// Whether reading the body failed because the server's body timeout passed (tower-http's
/// request-body timeout, set by the HTTP server).
fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The query string as ordered pairs, repeated keys kept (`tag_key=a&tag_key=b`).
pub struct Query(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Query> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Query(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

impl Query {
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn last(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn int(&self, key: &str, min: i64, max: i64, errors: &mut palisade_core::FieldErrors) -> Option<i64> {
        let text = self.last(key)?;
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(_) => {
                errors.add(key, format!("Input should be between {min} and {max}"));
                None
            }
            Err(_) => {
                errors.add(key, "Input should be a valid integer");
                None
            }
        }
    }

    /// `limit` (1..=1000, default 10) and `offset` (>= 0, default 0).
    pub fn page(&self, errors: &mut palisade_core::FieldErrors) -> (u32, u64) {
        let limit = self.int("limit", 1, 1000, errors).unwrap_or(10) as u32;
        let offset = self.int("offset", 0, i64::MAX, errors).unwrap_or(0) as u64;
        (limit, offset)
    }
}

/// A project or region id from the path; anything else names nothing (404).
pub fn path_int(text: &str, what: &str) -> Result<i64> {
    text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| ApiError::not_found(format!("{what} {text} could not be found")))
}

/// A resource id from the path; a malformed one names nothing (404, CONTRACT.md §8 item 15).
pub fn path_uuid(text: &str, what: &str) -> Result<Uuid> {
    Uuid::try_parse(text).map_err(|_| ApiError::not_found(format!("{what} {text} could not be found")))
}

/// The scope of a project/region path, if the caller's key may use the project and the region
/// exists: 404 for ids that are not ids, 403 for a project the key may not use.
pub fn scope_of(state: &AppState, caller: &Caller, project: &str, region: &str) -> Result<Scope> {
    caller.scope(state, path_int(project, "Project")?, path_int(region, "Region")?)
}

pub fn group_id(text: &str) -> Result<Uuid> {
    path_uuid(text, "Security group")
}

/// The path parameters of the request's route, by name, percent-decoded.
struct PathParams(Vec<(String, String)>);

impl PathParams {
    async fn of(parts: &mut Parts, state: &Arc<AppState>) -> Result<PathParams> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found(format!("The requested URL {} was not found on this server", parts.uri.path())))?;
        Ok(PathParams(raw.iter().map(|(name, value)| (name.to_owned(), value.to_owned())).collect()))
    }

    /// The parameter `name`; a route without it is a programming error, answered as a 500.
    fn get(&self, name: &str) -> Result<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| ApiError::Internal(format!("the route has no {{{name}}} parameter")))
    }
}

/// A project/region path (`…/{project_id}/{region_id}…`) checked for the caller: the scope the
/// key may use. Authentication comes first (401 before 404).
pub struct ScopePath {
    pub caller: Caller,
    pub scope: Scope,
}

impl ScopePath {
    async fn with_params(parts: &mut Parts, state: &Arc<AppState>) -> Result<(ScopePath, PathParams)> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = PathParams::of(parts, state).await?;
        let scope = scope_of(state, &caller, params.get("project_id")?, params.get("region_id")?)?;
        Ok((ScopePath { caller, scope }, params))
    }
}

impl FromRequestParts<Arc<AppState>> for ScopePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<ScopePath> {
        Ok(ScopePath::with_params(parts, state).await?.0)
    }
}

/// A group's path (`…/{project_id}/{region_id}/{group_id}…`) checked for the caller: the scope
/// the key may use and the group's id. Authentication comes first (401 before 404).
pub struct GroupPath {
    pub caller: Caller,
    pub scope: Scope,
    pub id: Uuid,
}

impl FromRequestParts<Arc<AppState>> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<GroupPath> {
        let (ScopePath { caller, scope }, params) = ScopePath::with_params(parts, state).await?;
        let id = group_id(params.get("group_id")?)?;
        Ok(GroupPath { caller, scope, id })
    }
}
