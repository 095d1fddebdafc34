//! The service's OpenAPI 3.1 document.

use serde_json::{Value, json};

pub fn document() -> Value {
    json!({"openapi": "3.1.0", "info": {"title": "Palisade", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
}

pub fn reference_page(doc: &Value) -> String {
    format!("<!doctype html><title>Palisade API</title><pre>{}</pre>", serde_json::to_string_pretty(doc).unwrap_or_default())
}
