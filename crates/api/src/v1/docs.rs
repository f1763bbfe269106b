//! `GET /docs`: the API reference as one server-rendered HTML page, made
//! from the OpenAPI document ([`super::openapi`]) and the problem catalogue
//! ([`super::problem::KINDS`]). It loads nothing from elsewhere (no CDN, no
//! script) and is served with a Content-Security-Policy that allows only its
//! own inline stylesheet.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::openapi;
use super::problem::KINDS;

const TEMPLATE: &str = include_str!("../../templates/docs.html");

const CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1d2433}\
code{font:13px ui-monospace,monospace;background:#f2f4f8;padding:0 .25em;border-radius:3px}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{text-align:left;vertical-align:top;\
border-bottom:1px solid #e3e6ec;padding:.3rem .5rem}section{margin:2rem 0}.operation{border-top:2px solid #e3e6ec;\
padding-top:1rem}.method{font-weight:700}.post{color:#8a4b00}.get{color:#0b5d1e}nav li{list-style:none}\
nav ul{padding:0}small{color:#6b7385;font-size:60%}h3{margin-bottom:.25rem}";

#[derive(Serialize)]
struct Page {
    title: String,
    version: String,
    description: String,
    css: &'static str,
    operations: Vec<Operation>,
    schemas: Vec<SchemaDoc>,
    problems: Vec<ProblemDoc>,
}

#[derive(Serialize)]
struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    /// `None`: no key; else the scopes listed by its security requirement.
    scopes: Option<Vec<String>>,
    /// The key is optional (the original endpoints).
    optional_key: bool,
    parameters: Vec<Parameter>,
    request: Option<String>,
    responses: Vec<Response>,
}

#[derive(Serialize)]
struct Parameter {
    name: String,
    location: String,
    required: bool,
    description: String,
}

#[derive(Serialize)]
struct Response {
    status: String,
    description: String,
    schema: Option<String>,
}

#[derive(Serialize)]
struct SchemaDoc {
    name: String,
    description: String,
    fields: Vec<Field>,
}

#[derive(Serialize)]
struct Field {
    name: String,
    r#type: String,
    required: bool,
    description: String,
}

#[derive(Serialize)]
struct ProblemDoc {
    code: &'static str,
    status: u16,
    title: &'static str,
    advice: &'static str,
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The component name a `$ref` (or an array of them) points to.
fn schema_name(schema: &Value) -> Option<String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().map(str::to_owned);
    }
    let items = schema.get("items")?;
    schema_name(items).map(|name| format!("{name}[]"))
}

/// A schema's type as a reader wants it: `string (date-time)`, `Payment`,
/// `string[]`, `integer | null`.
fn type_name(schema: &Value) -> String {
    if let Some(name) = schema_name(schema) {
        return name;
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(key).and_then(Value::as_array) {
            return parts.iter().map(type_name).collect::<Vec<_>>().join(" | ");
        }
    }
    let base = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => "any".into(),
    };
    match schema.get("format").and_then(Value::as_str) {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return operations;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, operation) in item {
            let security = operation.get("security").and_then(Value::as_array);
            let optional_key = security.is_some_and(|list| {
                list.iter()
                    .any(|entry| entry.as_object().is_some_and(|entry| entry.is_empty()))
            });
            let scopes = security.map(|list| {
                list.iter()
                    .filter_map(|entry| entry.get("api_key").and_then(Value::as_array))
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
            let parameters = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|parameter| Parameter {
                    name: text(parameter, "name"),
                    location: text(parameter, "in"),
                    required: parameter.get("required").and_then(Value::as_bool).unwrap_or(false),
                    description: text(parameter, "description"),
                })
                .collect();
            let request = operation
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .and_then(|content| content.values().next())
                .and_then(|media| media.get("schema"))
                .map(type_name);
            let responses = operation
                .get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(status, response)| Response {
                    status: status.clone(),
                    description: text(response, "description"),
                    schema: response
                        .get("content")
                        .and_then(Value::as_object)
                        .and_then(|content| content.values().next())
                        .and_then(|media| media.get("schema"))
                        .and_then(schema_name),
                })
                .collect();
            let summary = text(operation, "summary");
            let description = text(operation, "description");
            operations.push(Operation {
                anchor: format!("{method}-{}", path.trim_matches('/').replace(['/', '{', '}'], "-")),
                method: method.clone(),
                path: path.clone(),
                summary,
                description,
                scopes,
                optional_key,
                parameters,
                request,
                responses,
            });
        }
    }
    operations
}

fn schemas(document: &Value) -> Vec<SchemaDoc> {
    let Some(schemas) = document.pointer("/components/schemas").and_then(Value::as_object) else {
        return Vec::new();
    };
    schemas
        .iter()
        .map(|(name, schema)| {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let fields = schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(field, property)| Field {
                    name: field.clone(),
                    r#type: type_name(property),
                    required: required.contains(&field.as_str()),
                    description: text(property, "description"),
                })
                .collect();
            SchemaDoc {
                name: name.clone(),
                description: text(schema, "description"),
                fields,
            }
        })
        .collect()
}

/// The page, rendered once.
///
/// # Errors
/// A template error (a bug: the template is compiled in).
pub fn render() -> Result<String, minijinja::Error> {
    let document: Value = serde_json::from_str(openapi::json()).unwrap_or(Value::Null);
    let page = Page {
        title: document
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or("tronpay")
            .to_owned(),
        version: document
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        description: document
            .pointer("/info/description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        css: CSS,
        operations: operations(&document),
        schemas: schemas(&document),
        problems: KINDS
            .iter()
            .map(|kind| ProblemDoc {
                code: kind.code,
                status: kind.status,
                title: kind.title,
                advice: kind.advice,
            })
            .collect(),
    };
    let mut environment = minijinja::Environment::new();
    environment.add_template("docs.html", TEMPLATE)?;
    environment
        .get_template("docs.html")?
        .render(minijinja::value::Serde(&page))
}

/// The Content-Security-Policy of the page: nothing but its own stylesheet.
pub fn content_security_policy() -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(CSS.as_bytes());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /docs`.
pub async fn serve() -> HttpResponse {
    static PAGE: OnceLock<(String, String)> = OnceLock::new();
    let (page, policy) = PAGE.get_or_init(|| {
        let page = render().unwrap_or_else(|error| {
            tracing::error!(%error, "the docs page does not render");
            "<!doctype html><title>tronpay</title><p>The docs page failed to render; see /openapi.json.".into()
        });
        (page, content_security_policy())
    });
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", policy.as_str()))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(page.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_operation_schema_and_problem() {
        let page = render().unwrap();
        let document: Value = serde_json::from_str(openapi::json()).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                // The template escapes `/` as HTML allows.
                let shown = path.replace('/', "&#x2f;");
                assert!(
                    page.contains(&format!("{}</code> <code>{shown}</code>", method.to_uppercase())),
                    "{method} {path}"
                );
            }
        }
        for name in document["components"]["schemas"].as_object().unwrap().keys() {
            assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
        }
        for kind in KINDS {
            assert!(page.contains(&format!("id=\"problem-{}\"", kind.code)), "{}", kind.code);
        }
        // Offline: nothing is loaded from anywhere.
        assert!(!page.contains("<script"));
        assert!(!page.contains("src=\"http"));
        assert!(!page.contains("href=\"http"));
        // The inline stylesheet is the one the policy allows.
        assert!(page.contains(&format!("<style>{CSS}</style>")));
    }
}
