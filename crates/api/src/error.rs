//! The API's one error type and the Gcore error body (CONTRACT.md §6):
//! `{"exception_class", "message", "request_id", "invalid_fields"?, "info"?}`, always JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core::{FieldErrors, RuleError};
use palisade_service::ops::OpError;
use palisade_store::StoreError;
use serde_json::{Map, Value, json};

use crate::request_id;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum ApiError {
    /// 400 with `invalid_fields`.
    Validation(FieldErrors),
    /// 401.
    Unauthenticated(String),
    /// 403.
    Forbidden(String),
    /// 404.
    NotFound { message: String, invalid_fields: Option<FieldErrors> },
    /// 405.
    MethodNotAllowed,
    /// 409, never retried by clients (`x-should-retry: false`).
    Conflict { class: &'static str, message: String, field: Option<String>, info: Option<Value> },
    /// 408: the request's body did not arrive within the body timeout.
    RequestTimeout(String),
    /// 413: the request's body is larger than `max_body_bytes`; it is refused unread.
    PayloadTooLarge(String),
    /// 429 with `Retry-After` (seconds): a rate limit or the unfinished-task limit; clients
    /// retry after the wait.
    TooManyRequests { message: String, retry_after: u64 },
    /// 504: the request's work did not end within the request deadline (`--request-deadline-ms`).
    DeadlineExceeded,
    /// 503: the database is unreachable; clients may retry.
    Unavailable(String),
    /// 500; details are logged, never sent.
    Internal(String),
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound { message: message.into(), invalid_fields: None }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::Validation(FieldErrors::single(field, reason))
    }
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(message) => ApiError::Unavailable(message),
            StoreError::Internal(message) => ApiError::Internal(message),
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        let message = e.to_string();
        match e {
            RuleError::Invalid { field, message } => ApiError::Validation(FieldErrors::single(field, message)),
            RuleError::RemoteGroupNotFound { field, .. } => {
                ApiError::NotFound { invalid_fields: Some(FieldErrors::single(field, message.clone())), message }
            }
            RuleError::Duplicate { field, existing } => ApiError::Conflict {
                class: "SecurityGroupRuleExists",
                message,
                field: Some(field),
                info: Some(json!({"existing_rule_id": existing.to_string()})),
            },
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(message) => ApiError::not_found(message),
            OpError::Invalid(fields) => ApiError::Validation(fields),
            OpError::Rule(rule) => rule.into(),
            OpError::Quota(exceeded) => ApiError::Conflict {
                class: "QuotaLimitExceed",
                message: exceeded.to_string(),
                field: Some(exceeded.quota.to_string()),
                info: Some(json!({"quota": exceeded.quota, "limit": exceeded.limit, "requested": exceeded.requested})),
            },
            OpError::Conflict { class, message, info } => ApiError::Conflict { class, message, field: None, info },
            e @ OpError::TooManyTasks { .. } => ApiError::TooManyRequests { message: e.to_string(), retry_after: 1 },
            OpError::DeadlineExceeded => ApiError::DeadlineExceeded,
            OpError::Store(store) => store.into(),
        }
    }
}

fn invalid_fields_value(errors: &FieldErrors) -> Value {
    Value::Object(errors.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        let (status, class, message) = match &self {
            ApiError::Validation(errors) => {
                body.insert("invalid_fields".into(), invalid_fields_value(errors));
                (StatusCode::BAD_REQUEST, "ValidationError", errors.to_string())
            }
            ApiError::Unauthenticated(message) => (StatusCode::UNAUTHORIZED, "NotAuthenticated", message.clone()),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, "PermissionDenied", message.clone()),
            ApiError::NotFound { message, invalid_fields } => {
                if let Some(errors) = invalid_fields {
                    body.insert("invalid_fields".into(), invalid_fields_value(errors));
                }
                (StatusCode::NOT_FOUND, "NotFoundError", message.clone())
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "HTTPError", "Method Not Allowed".to_string()),
            ApiError::Conflict { class, message, field, info } => {
                if let Some(field) = field {
                    body.insert("invalid_fields".into(), json!({ field: [message] }));
                }
                if let Some(info) = info {
                    body.insert("info".into(), info.clone());
                }
                (StatusCode::CONFLICT, *class, message.clone())
            }
            ApiError::RequestTimeout(message) => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout", message.clone()),
            ApiError::PayloadTooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", message.clone()),
            ApiError::TooManyRequests { message, .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message.clone()),
            ApiError::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "The request did not finish within the server's request deadline; ask for less at once".to_string(),
            ),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "The service is temporarily unavailable".to_string())
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal server error".to_string())
            }
        };
        body.insert("exception_class".into(), Value::String(class.into()));
        body.insert("message".into(), Value::String(message));
        body.insert("request_id".into(), Value::String(request_id::current()));
        let mut response = (status, axum::Json(Value::Object(body))).into_response();
        if status == StatusCode::CONFLICT {
            response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Transient by definition (an outage, or a lock that a hung node holds until
            // PostgreSQL ends its session): worth retrying soon.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}
