//! GraphQL over HTTP, as the GraphQL-over-HTTP specification draft defines it
//! (<https://graphql.github.io/graphql-over-http/draft/>): reading a request
//! from a `POST` body or a `GET` query string, negotiating the response's
//! media type, and the status codes that go with each.
//!
//! - `POST` with `Content-Type: application/json`: one request
//!   `{query, operationName, variables, extensions}` or a batch (an array).
//!   Another or no content type is 415; a body that is not JSON, or whose
//!   parameters have the wrong types (`query` not a string, `variables` not a
//!   map, ...), is 400.
//! - `GET` with the same parameters in the query string (`variables` and
//!   `extensions` as JSON text). Only queries: a mutation is refused with 405
//!   (by [`crate::graphql::guard`], once automatic persisted queries have
//!   supplied the document) and a subscription with WEBSOCKET_REQUIRED.
//! - The response is `application/graphql-response+json` when the client's
//!   `Accept` ranks it at least as high as `application/json`, and
//!   `application/json` otherwise (no `Accept`, `*/*`, or nothing this server
//!   speaks: the specification allows ignoring an unsupported `Accept`).
//! - Status: with `application/graphql-response+json`, a request error (the
//!   document does not parse or validate, a variable does not coerce, no
//!   operation of that name, a persisted query not found: anything raised
//!   before execution, so the response has no `data`) is 400; with
//!   `application/json` it is 200, as that media type's clients expect. A
//!   response with `data` (even null, after a field error) is 200 either way.
//!   Batches are 200. A response that never ran has no `data` entry.

use async_graphql::{BatchRequest, BatchResponse, Request, Response, Value as GqlValue, Variables};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::graphql::error::{code_of, request_error};

/// `application/graphql-response+json`, the specification's media type.
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// `application/json`, the legacy media type (the default).
pub const APPLICATION_JSON: &str = "application/json";

/// The media type a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: request errors are 400.
    GraphqlResponse,
    /// `application/json`: every well-formed request is 200.
    Json,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        })
    }
}

/// One `Accept` entry: its media range (lower case) and quality.
fn accept_entries(headers: &HeaderMap) -> Vec<(String, f32)> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let range = parts.next()?.trim().to_ascii_lowercase();
            if range.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((range, q))
        })
        .collect()
}

/// The response media type for this `Accept` (see the module docs).
pub fn negotiate(headers: &HeaderMap) -> Media {
    let entries = accept_entries(headers);
    let quality = |matches: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .filter(|(range, _)| matches(range))
            .map(|(_, q)| *q)
            .fold(0.0f32, f32::max)
    };
    // Wildcards stand for application/json: the specification says `*/*`
    // gets the legacy type, so only an explicit entry selects the new one.
    let graphql = quality(&|r| r == GRAPHQL_RESPONSE_JSON);
    let json = quality(&|r| r == APPLICATION_JSON || r == "application/*" || r == "*/*");
    if graphql > 0.0 && graphql >= json {
        Media::GraphqlResponse
    } else {
        Media::Json
    }
}

/// Whether the client is a browser asking for a page (`text/html` ranked above
/// both JSON types): then `GET /graphql` without a query answers GraphiQL.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let entries = accept_entries(headers);
    let html = entries
        .iter()
        .filter(|(r, _)| r == "text/html")
        .map(|(_, q)| *q)
        .fold(0.0f32, f32::max);
    let json = entries
        .iter()
        .filter(|(r, _)| r == APPLICATION_JSON || r == GRAPHQL_RESPONSE_JSON)
        .map(|(_, q)| *q)
        .fold(0.0f32, f32::max);
    html > 0.0 && html > json
}

/// A request refused at the HTTP level, before any GraphQL runs.
#[derive(Debug)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client.
    pub message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The refusal as a GraphQL error response (code BAD_REQUEST) in `media`.
    pub fn into_response(self, media: Media) -> HttpResponse {
        error_response(media, self.status, &self.message, "BAD_REQUEST")
    }
}

/// A request's parameters as sent, each with the type the specification
/// requires: anything else fails to deserialize and is answered 400.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    #[serde(default)]
    extensions: Option<Map<String, Value>>,
}

impl Params {
    fn into_request(self) -> Result<Request, Refusal> {
        let has_persisted = self
            .extensions
            .as_ref()
            .is_some_and(|e| e.contains_key("persistedQuery"));
        let query = self.query.unwrap_or_default();
        if query.trim().is_empty() && !has_persisted {
            return Err(Refusal::bad("the request has no query"));
        }
        let mut request = Request::new(query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            request = request.variables(Variables::from_json(Value::Object(variables)));
        }
        for (name, value) in self.extensions.unwrap_or_default() {
            let value = GqlValue::from_json(value).map_err(|e| Refusal::bad(format!("extensions.{name}: {e}")))?;
            request.extensions.0.insert(name, value);
        }
        Ok(request)
    }
}

fn params(value: Value) -> Result<Request, Refusal> {
    serde_json::from_value::<Params>(value)
        .map_err(|e| Refusal::bad(format!("the body is not a GraphQL request: {e}")))?
        .into_request()
}

/// Reads a `POST` body: the content type must be `application/json`.
pub fn from_post(headers: &HeaderMap, body: &[u8]) -> Result<BatchRequest, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(APPLICATION_JSON) {
        return Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "send GraphQL requests as Content-Type: application/json".into(),
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad("the request body is empty"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    match value {
        Value::Array(items) => Ok(BatchRequest::Batch(
            items.into_iter().map(params).collect::<Result<_, _>>()?,
        )),
        value @ Value::Object(_) => Ok(BatchRequest::Single(params(value)?)),
        _ => Err(Refusal::bad("the body must be a JSON object (or an array of them)")),
    }
}

/// Reads a `GET` query string. `None` when it names neither a query nor a
/// persisted one (then a browser gets GraphiQL).
pub fn from_get(query_string: Option<&str>) -> Result<Option<Request>, Refusal> {
    let mut fields = Map::new();
    for (key, value) in url::form_urlencoded::parse(query_string.unwrap_or_default().as_bytes()) {
        let parsed = match key.as_ref() {
            "query" | "operationName" => Value::String(value.into_owned()),
            "variables" | "extensions" => {
                if value.trim().is_empty() {
                    continue;
                }
                serde_json::from_str(&value).map_err(|e| Refusal::bad(format!("{key} is not JSON: {e}")))?
            }
            _ => continue,
        };
        fields.insert(key.into_owned(), parsed);
    }
    if !fields.contains_key("query") && !fields.contains_key("extensions") {
        return Ok(None);
    }
    params(Value::Object(fields)).map(Some)
}

/// Whether `response` failed before execution: errors and no data.
fn is_request_error(response: &Response) -> bool {
    response.data == GqlValue::Null && !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty())
}

/// The JSON of one response; one that never ran has no `data` entry (the
/// GraphQL specification: "If an error was raised before execution begins,
/// the data entry should not be present").
fn response_json(response: &Response) -> Value {
    let mut json = serde_json::to_value(response).unwrap_or(Value::Null);
    if is_request_error(response)
        && let Value::Object(fields) = &mut json
    {
        fields.remove("data");
    }
    json
}

/// Writes an executed operation or batch in `media`, with the status the
/// specification gives it (see the module docs), never cached.
pub fn respond(media: Media, response: BatchResponse) -> HttpResponse {
    let (status, body) = match &response {
        BatchResponse::Single(r) => {
            let status = if r
                .errors
                .iter()
                .any(|e| code_of(e).as_deref() == Some("METHOD_NOT_ALLOWED"))
            {
                StatusCode::METHOD_NOT_ALLOWED
            } else if media == Media::GraphqlResponse && is_request_error(r) {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, response_json(r))
        }
        BatchResponse::Batch(list) => (StatusCode::OK, Value::Array(list.iter().map(response_json).collect())),
    };
    write(media, status, &body)
}

/// A GraphQL error response for a failure before any operation ran.
pub fn error_response(media: Media, status: StatusCode, message: &str, code: &str) -> HttpResponse {
    write(media, status, &response_json(&request_error(message, code)))
}

fn write(media: Media, status: StatusCode, body: &Value) -> HttpResponse {
    let mut http = (status, Body::from(body.to_string())).into_response();
    let headers = http.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_media_type_follows_accept() {
        assert_eq!(negotiate(&HeaderMap::new()), Media::Json);
        assert_eq!(negotiate(&accept("*/*")), Media::Json);
        assert_eq!(negotiate(&accept("application/json")), Media::Json);
        assert_eq!(
            negotiate(&accept("application/graphql-response+json")),
            Media::GraphqlResponse
        );
        // Apollo Client 4 and urql 6 send these.
        assert_eq!(
            negotiate(&accept("application/graphql-response+json,application/json;q=0.9")),
            Media::GraphqlResponse
        );
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed"
            )),
            Media::GraphqlResponse
        );
        assert_eq!(
            negotiate(&accept("application/json, application/graphql-response+json;q=0.5")),
            Media::Json
        );
        assert_eq!(negotiate(&accept("text/plain")), Media::Json);
    }

    #[test]
    fn only_a_browser_asking_for_html_gets_a_page() {
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_html(&HeaderMap::new()));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json, text/html;q=0.5")));
    }

    #[test]
    fn parameters_of_the_wrong_type_are_refused() {
        let json = {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            h
        };
        let post = |body: &str| from_post(&json, body.as_bytes());
        assert!(post(r#"{"query": "{ a }", "variables": null, "extensions": null, "operationName": null}"#).is_ok());
        for bad in [
            r#"{"query": 0}"#,
            r#"{"query": ["{ a }"]}"#,
            r#"{"query": "{ a }", "variables": "x"}"#,
            r#"{"query": "{ a }", "variables": []}"#,
            r#"{"query": "{ a }", "extensions": false}"#,
            r#"{"query": "{ a }", "operationName": {}}"#,
            r#"{"qeury": "{ a }"}"#,
            r#"{ "not json"#,
            "",
            "7",
        ] {
            assert_eq!(
                post(bad).map(|_| ()).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(
            from_post(&HeaderMap::new(), br#"{"query": "{ a }"}"#)
                .map(|_| ())
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        // A persisted query needs no text.
        assert!(post(r#"{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}"#).is_ok());
    }

    #[test]
    fn get_parameters_come_from_the_query_string() {
        let r = from_get(Some(
            "query=query%20Q(%24n%3A%20Int)%20%7B%20a%20%7D&operationName=Q&variables=%7B%22n%22%3A1%7D",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r.query, "query Q($n: Int) { a }");
        assert_eq!(r.operation_name.as_deref(), Some("Q"));
        assert_eq!(r.variables.into_value().into_json().unwrap()["n"], 1);
        assert!(from_get(None).unwrap().is_none());
        assert!(from_get(Some("other=1")).unwrap().is_none());
        assert!(from_get(Some("query=%7Ba%7D&variables=%5B")).is_err());
        assert!(
            from_get(Some("query=%7Ba%7D&variables=%5B%5D")).is_err(),
            "an array is not a map"
        );
    }
}
