//! The offline HTML reference page (`GET /docs`): the OpenAPI document rendered as one
//! self-contained page, with no scripts, external styles or fonts, so it works without network
//! access. It reads only the document, so whatever the document says, the page shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
const STYLE: &str = "
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:1.2em 2em}header h1{margin:0;font-size:1.6em}header p{margin:.3em 0 0;color:#c7cede}
main{display:flex;align-items:flex-start}
nav{position:sticky;top:0;max-height:100vh;overflow:auto;width:20em;flex:none;padding:1em;box-sizing:border-box;border-right:1px solid #dde1e8;font-size:.85em}
nav ul{list-style:none;padding-left:.6em;margin:.2em 0}nav a{text-decoration:none;color:#1d2330}nav a:hover{text-decoration:underline}
article{padding:1em 2em 4em;min-width:0;flex:1}
h2{border-bottom:2px solid #dde1e8;padding-bottom:.2em;margin-top:2em}
section.op,section.schema{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.6em 1.2em 1em;margin:1.2em 0}
section.op h3,section.schema h3{margin:.4em 0;font-size:1.05em;word-break:break-all}
.method{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;color:#fff;font-size:.8em;padding:.15em .4em;margin-right:.5em;font-family:ui-monospace,monospace}
.get{background:#2f7d32}.post{background:#1565c0}.put{background:#8e5b00}.patch{background:#6a1b9a}.delete{background:#b71c1c}
.deprecated{color:#b71c1c;font-size:.8em;border:1px solid #b71c1c;border-radius:4px;padding:0 .3em;margin-left:.5em}
.summary{font-weight:600;margin:.2em 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#eef1f5;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.4em 0;font-size:.9em}
th,td{border:1px solid #dde1e8;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f1f3f6}
td table{margin:.3em 0 0}
.muted{color:#5f6b7a}.req{color:#b71c1c;font-weight:600}
h4{margin:.9em 0 .2em}
";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans and `**bold**`.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<strong>{}</strong>", escape(piece));
                } else {
                    out.push_str(&escape(piece));
                }
            }
        }
    }
    out
}

/// Paragraphs and `- ` lists of a description.
fn blocks(text: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let lines: Vec<&str> = block.lines().map(str::trim).collect();
        let items = lines.iter().filter(|l| l.starts_with("- ")).count();
        if items > 0 {
            let mut open = false;
            for line in lines {
                if let Some(item) = line.strip_prefix("- ") {
                    if !open {
                        out.push_str("<ul>");
                        open = true;
                    }
                    let _ = write!(out, "<li>{}</li>", inline(item));
                } else {
                    if open {
                        out.push_str("</ul>");
                        open = false;
                    }
                    let _ = write!(out, "<p>{}</p>", inline(line));
                }
            }
            if open {
                out.push_str("</ul>");
            }
        } else {
            let _ = write!(out, "<p>{}</p>", inline(&lines.join(" ")));
        }
    }
    out
}

fn anchor(kind: &str, name: &str) -> String {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    format!("{kind}-{slug}")
}

struct Renderer<'a> {
    doc: &'a Value,
}

impl<'a> Renderer<'a> {
    /// Follows a local `$ref`.
    fn resolve(&self, value: &'a Value) -> &'a Value {
        let mut value = value;
        for _ in 0..8 {
            match value.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
                Some(pointer) => match self.doc.pointer(pointer) {
                    Some(target) => value = target,
                    None => break,
                },
                None => break,
            }
        }
        value
    }

    /// A short, linked description of a schema's type.
    fn type_html(&self, schema: &Value) -> String {
        if let Value::Bool(b) = schema {
            return if *b { "any JSON".into() } else { "nothing".into() };
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            return format!("<a href=\"#{}\">{}</a>", escape(&anchor("schema", name)), escape(name));
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let sep = if key == "allOf" { " &amp; " } else { " | " };
                return options.iter().map(|o| self.type_html(o)).collect::<Vec<_>>().join(sep);
            }
        }
        if let Some(value) = schema.get("const") {
            return format!("<code>{}</code>", escape(&value.to_string()));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.is_empty() {
            return "any JSON".into();
        }
        types
            .iter()
            .map(|&t| match t {
                "array" => match schema.get("items") {
                    Some(items) => format!("array of {}", self.type_html(items)),
                    None => "array".into(),
                },
                "object" => match schema.get("additionalProperties") {
                    Some(values) if values.is_object() && schema.get("properties").is_none() => {
                        let keys = schema.get("propertyNames").map(|k| self.type_html(k)).unwrap_or_else(|| "string".into());
                        format!("object of {keys} → {}", self.type_html(values))
                    }
                    _ => "object".into(),
                },
                "string" => match schema.get("format").and_then(Value::as_str) {
                    Some(format) => format!("string ({})", escape(format)),
                    None => "string".into(),
                },
                other => escape(other),
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Limits, enums, defaults and patterns of a schema.
    fn constraints_html(&self, schema: &Value) -> String {
        let mut parts = Vec::new();
        let code = |v: &Value| format!("<code>{}</code>", escape(&v.to_string()));
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            parts.push(format!("one of {}", values.iter().map(code).collect::<Vec<_>>().join(", ")));
        }
        for (key, label) in [
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("maxItems", "max items"),
            ("pattern", "pattern"),
            ("default", "default"),
        ] {
            if let Some(value) = schema.get(key) {
                let shown = match value {
                    Value::String(s) if key == "pattern" => format!("<code>{}</code>", escape(s)),
                    other => code(other),
                };
                parts.push(format!("{label} {shown}"));
            }
        }
        if let Some(media) = schema.get("contentMediaType").and_then(Value::as_str) {
            let inner = schema.get("contentSchema").map(|s| self.type_html(s)).unwrap_or_default();
            parts.push(format!("holds {} {inner}", escape(media)));
        }
        if let Some(examples) = schema.get("examples").and_then(Value::as_array) {
            if !examples.is_empty() && examples.iter().all(|e| !e.is_object()) {
                parts.push(format!("e.g. {}", examples.iter().map(code).collect::<Vec<_>>().join(", ")));
            }
        }
        if schema.get("deprecated").and_then(Value::as_bool) == Some(true) {
            parts.push("<span class=\"deprecated\">deprecated</span>".into());
        }
        if parts.is_empty() { String::new() } else { format!("<div class=\"muted\">{}</div>", parts.join("; ")) }
    }

    /// A schema: a property table for objects with properties, else its type and limits.
    fn schema_html(&self, schema: &Value, depth: usize) -> String {
        let mut out = String::new();
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            out.push_str(&blocks(description));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        match properties {
            Some(properties) if !properties.is_empty() => {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
                for (name, property) in properties {
                    let req = if required.contains(&name.as_str()) { " <span class=\"req\">required</span>" } else { "" };
                    let mut cell = property.get("description").and_then(Value::as_str).map(blocks).unwrap_or_default();
                    cell.push_str(&self.constraints_html(property));
                    // Inline objects with their own fields get a nested table.
                    if depth < 3 && property.get("properties").is_some() && property.get("$ref").is_none() {
                        let mut nested = property.clone();
                        if let Some(obj) = nested.as_object_mut() {
                            obj.remove("description");
                        }
                        cell.push_str(&self.schema_html(&nested, depth + 1));
                    }
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{cell}</td></tr>",
                        escape(name),
                        self.type_html(property)
                    );
                }
                out.push_str("</table>");
                if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    let _ = write!(out, "<p class=\"muted\">Other keys: {}</p>", self.type_html(extra));
                }
            }
            _ => {
                let _ = write!(out, "<p>Type: {}</p>", self.type_html(schema));
                out.push_str(&self.constraints_html(schema));
            }
        }
        if let Some(mapping) = schema.get("discriminator").and_then(|d| d.get("propertyName")).and_then(Value::as_str) {
            let _ = write!(out, "<p class=\"muted\">Chosen by <code>{}</code>.</p>", escape(mapping));
        }
        if let Some(examples) = schema.get("examples").and_then(Value::as_array) {
            for example in examples.iter().filter(|e| e.is_object()) {
                let pretty = serde_json::to_string_pretty(example).unwrap_or_default();
                let _ = write!(out, "<details><summary>Example</summary><pre><code>{}</code></pre></details>", escape(&pretty));
            }
        }
        out
    }

    fn parameters_html(&self, op: &Value) -> String {
        let Some(parameters) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) else {
            return String::new();
        };
        let mut out = String::from("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>");
        for parameter in parameters {
            let parameter = self.resolve(parameter);
            let text = |key: &str| parameter.get(key).and_then(Value::as_str).unwrap_or_default();
            let schema = parameter.get("schema").cloned().unwrap_or(Value::Null);
            let mut location = escape(text("in"));
            if parameter.get("explode").and_then(Value::as_bool) == Some(true)
                && schema.get("type").and_then(Value::as_str) == Some("array")
            {
                location.push_str(" (repeat the key)");
            }
            let req =
                if parameter.get("required").and_then(Value::as_bool) == Some(true) { " <span class=\"req\">required</span>" } else { "" };
            let deprecated = if parameter.get("deprecated").and_then(Value::as_bool) == Some(true) {
                " <span class=\"deprecated\">deprecated</span>"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{req}{deprecated}</td><td>{location}</td><td>{}</td><td>{}{}</td></tr>",
                escape(text("name")),
                self.type_html(&schema),
                blocks(text("description")),
                self.constraints_html(&schema),
            );
        }
        out.push_str("</table>");
        out
    }

    fn body_html(&self, op: &Value) -> String {
        let Some(body) = op.get("requestBody") else { return String::new() };
        let body = self.resolve(body);
        let mut out = String::from("<h4>Request body</h4>");
        let required = body.get("required").and_then(Value::as_bool) == Some(true);
        if let Some(description) = body.get("description").and_then(Value::as_str) {
            out.push_str(&blocks(description));
        }
        if let Some(content) = body.get("content").and_then(Value::as_object) {
            for (media, media_type) in content {
                let schema = media_type.get("schema").cloned().unwrap_or(Value::Null);
                let _ = write!(
                    out,
                    "<p><code>{}</code>{}: {}</p>",
                    escape(media),
                    if required { " <span class=\"req\">required</span>" } else { " (optional)" },
                    self.type_html(&schema)
                );
                if schema.get("$ref").is_some() {
                    out.push_str(&self.schema_html(self.resolve(&schema), 1));
                }
            }
        }
        out
    }

    fn responses_html(&self, op: &Value) -> String {
        let Some(responses) = op.get("responses").and_then(Value::as_object) else { return String::new() };
        let mut out = String::from("<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>body</th></tr>");
        for (status, response) in responses {
            let response = self.resolve(response);
            let description = response.get("description").and_then(Value::as_str).unwrap_or_default();
            let mut body = Vec::new();
            if let Some(content) = response.get("content").and_then(Value::as_object) {
                for (media, media_type) in content {
                    let schema = media_type.get("schema").map(|s| self.type_html(s)).unwrap_or_default();
                    body.push(format!("<code>{}</code> {schema}", escape(media)));
                }
            }
            let mut headers = String::new();
            if let Some(hs) = response.get("headers").and_then(Value::as_object) {
                let names: Vec<String> =
                    hs.keys().filter(|k| *k != "x-request-id").map(|k| format!("<code>{}</code>", escape(k))).collect();
                if !names.is_empty() {
                    let _ = write!(headers, "<div class=\"muted\">headers: {}</div>", names.join(", "));
                }
            }
            let body = if body.is_empty() { "<span class=\"muted\">none</span>".to_string() } else { body.join("<br>") };
            let _ =
                write!(out, "<tr><td><code>{}</code></td><td>{}{headers}</td><td>{body}</td></tr>", escape(status), blocks(description));
        }
        out.push_str("</table>");
        out
    }

    fn operation_html(&self, path: &str, method: &str, op: &Value) -> String {
        let text = |key: &str| op.get(key).and_then(Value::as_str).unwrap_or_default();
        let id = text("operationId");
        let mut out = String::new();
        let _ = write!(
            out,
            "<section class=\"op\" id=\"{}\"><h3><span class=\"method {m}\">{M}</span><code>{}</code>{}</h3>",
            escape(&anchor("op", id)),
            escape(path),
            if op.get("deprecated").and_then(Value::as_bool) == Some(true) { "<span class=\"deprecated\">deprecated</span>" } else { "" },
            m = escape(method),
            M = escape(&method.to_uppercase()),
        );
        let _ = write!(out, "<p class=\"summary\">{}</p>", escape(text("summary")));
        out.push_str(&blocks(text("description")));
        let security = op.get("security").or_else(|| self.doc.get("security"));
        let schemes: Vec<String> = security
            .and_then(Value::as_array)
            .map(|reqs| reqs.iter().filter_map(Value::as_object).flat_map(|r| r.keys().map(|k| escape(k))).collect())
            .unwrap_or_default();
        let auth = if schemes.is_empty() {
            "none".to_string()
        } else {
            schemes.iter().map(|s| format!("<a href=\"#auth\">{s}</a>")).collect::<Vec<_>>().join(", ")
        };
        let _ = write!(out, "<p class=\"muted\">Operation <code>{}</code> · authentication: {auth}</p>", escape(id));
        out.push_str(&self.parameters_html(op));
        out.push_str(&self.body_html(op));
        out.push_str(&self.responses_html(op));
        out.push_str("</section>");
        out
    }

    fn page(&self) -> String {
        let doc = self.doc;
        let info = doc.get("info").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let title = text(&info, "title");
        let version = text(&info, "version");

        // Operations grouped by their first tag, in the order of the document's tags.
        const METHODS: [&str; 8] = ["get", "put", "post", "patch", "delete", "options", "head", "trace"];
        let mut tag_order: Vec<(String, String)> = doc
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().map(|t| (text(t, "name"), text(t, "description"))).collect())
            .unwrap_or_default();
        let mut grouped: BTreeMap<String, Vec<(&str, &str, &Value)>> = BTreeMap::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                for method in METHODS {
                    if let Some(op) = item.get(method) {
                        let tag = op.get("tags").and_then(|t| t.get(0)).and_then(Value::as_str).unwrap_or("Other").to_string();
                        if !tag_order.iter().any(|(name, _)| *name == tag) {
                            tag_order.push((tag.clone(), String::new()));
                        }
                        grouped.entry(tag).or_default().push((path.as_str(), method, op));
                    }
                }
            }
        }
        let schemas = doc.pointer("/components/schemas").and_then(Value::as_object);

        let mut nav = String::from(
            "<nav><strong>Contents</strong><ul><li><a href=\"#overview\">Overview</a></li><li><a href=\"#auth\">Authentication</a></li>",
        );
        for (tag, _) in &tag_order {
            let Some(ops) = grouped.get(tag) else { continue };
            let _ = write!(nav, "<li><a href=\"#{}\">{}</a><ul>", escape(&anchor("tag", tag)), escape(tag));
            for (path, method, op) in ops {
                let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default();
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or(path);
                let _ = write!(
                    nav,
                    "<li><a href=\"#{}\"><span class=\"muted\">{}</span> {}</a></li>",
                    escape(&anchor("op", id)),
                    escape(&method.to_uppercase()),
                    escape(summary)
                );
            }
            nav.push_str("</ul></li>");
        }
        if let Some(schemas) = schemas {
            nav.push_str("<li><a href=\"#schemas\">Schemas</a><ul>");
            for name in schemas.keys() {
                let _ = write!(nav, "<li><a href=\"#{}\">{}</a></li>", escape(&anchor("schema", name)), escape(name));
            }
            nav.push_str("</ul></li>");
        }
        nav.push_str("</ul></nav>");

        let mut body = String::new();
        let _ = write!(body, "<section id=\"overview\"><h2>Overview</h2>{}", blocks(&text(&info, "description")));
        let _ = write!(
            body,
            "<p class=\"muted\">OpenAPI {} · the machine-readable document is at <a href=\"openapi.json\">openapi.json</a>.</p></section>",
            escape(&text(doc, "openapi"))
        );
        body.push_str("<section id=\"auth\"><h2>Authentication</h2>");
        if let Some(schemes) = doc.pointer("/components/securitySchemes").and_then(Value::as_object) {
            for (name, scheme) in schemes {
                let _ = write!(
                    body,
                    "<p><strong>{}</strong>: {} in {} <code>{}</code>.</p>{}",
                    escape(name),
                    escape(&text(scheme, "type")),
                    escape(&text(scheme, "in")),
                    escape(&text(scheme, "name")),
                    blocks(&text(scheme, "description"))
                );
            }
        }
        body.push_str("</section>");
        for (tag, description) in &tag_order {
            let Some(ops) = grouped.get(tag) else { continue };
            let _ = write!(body, "<section id=\"{}\"><h2>{}</h2>{}", escape(&anchor("tag", tag)), escape(tag), blocks(description));
            for (path, method, op) in ops {
                body.push_str(&self.operation_html(path, method, op));
            }
            body.push_str("</section>");
        }
        if let Some(responses) = doc.pointer("/components/responses").and_then(Value::as_object) {
            body.push_str("<section id=\"errors\"><h2>Error responses</h2><table><tr><th>name</th><th>description</th><th>body</th></tr>");
            for (name, response) in responses {
                let schema = response.pointer("/content/application~1json/schema").map(|s| self.type_html(s)).unwrap_or_default();
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{schema}</td></tr>",
                    escape(name),
                    blocks(&text(response, "description"))
                );
            }
            body.push_str("</table></section>");
        }
        if let Some(schemas) = schemas {
            body.push_str("<section id=\"schemas\"><h2>Schemas</h2>");
            for (name, schema) in schemas {
                let _ = write!(
                    body,
                    "<section class=\"schema\" id=\"{}\"><h3>{}</h3>{}</section>",
                    escape(&anchor("schema", name)),
                    escape(name),
                    self.schema_html(schema, 0)
                );
            }
            body.push_str("</section>");
        }

        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t} API reference</title><style>{STYLE}</style></head>\n<body><header><h1>{t} API reference</h1><p>Version {v}{s}</p></header>\
             <main>{nav}<article>{body}</article></main></body></html>\n",
            t = escape(&title),
            v = escape(&version),
            s = info.get("summary").and_then(Value::as_str).map(|s| format!(" · {}", escape(s))).unwrap_or_default(),
        )
    }
}

/// The document as a self-contained HTML page (no scripts, external styles or fonts).
pub fn page(doc: &Value) -> String {
    Renderer { doc }.page()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let doc = crate::openapi::document();
        let page = page(&doc);
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert!(page.contains(&format!("id=\"op-{id}\"")), "{id} missing from the page");
            }
        }
        assert!(page.contains("id=\"schema-SecurityGroup\""));
        let lower = page.to_lowercase();
        for forbidden in ["<script", "<link", "src=", "@import", "url(", "http://", "https://"] {
            assert!(!lower.contains(forbidden), "the page contains {forbidden}");
        }

        let hostile = json!({
            "openapi": "3.1.0",
            "info": {"title": "<T&'\">", "version": "1"},
            "tags": [{"name": "x<y"}],
            "paths": {"/a/<b>": {"get": {"operationId": "o\"><script>", "summary": "<script>alert(1)</script>", "tags": ["x<y"],
                "description": "`<i>` and <b>", "responses": {"200": {"description": "<ok>"}}}}},
            "components": {"schemas": {"<Schema1>": {"type": "object", "properties": {"<prop1>": {"type": "string", "description": "<desc1>", "enum": ["<enum1>"]}}}}},
        });
        let page = super::page(&hostile);
        assert!(!page.contains("<script"), "unescaped script in {page}");
        for raw in ["<T&", "<i>", "<b>", "<ok>", "<Schema1>", "<prop1>", "<desc1>", "<enum1>", "/a/<b>", "x<y"] {
            assert!(!page.contains(raw), "{raw} was not escaped");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<code>&lt;i&gt;</code>"));
    }
}
