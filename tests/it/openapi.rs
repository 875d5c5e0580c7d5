//! `GET /openapi.json` held to the router: every route in `router::CATALOGUE` documented and
//! nothing else, every `$ref` resolving, and the live server answering what the document says.

use crate::support::{Resp, TestServer, raw_request};
use inferd::api::CATALOGUE;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "delete", "patch", "options", "trace",
];

/// The document as the server serves it, to anyone (an open route).
fn document(server: &TestServer) -> Value {
    let r = server.request("GET", "/openapi.json", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// Every operation: (path template, lower-case method, operation object).
fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        for (key, op) in item.as_object().expect("path item is an object") {
            if METHODS.contains(&key.as_str()) {
                out.push((path.as_str(), key.as_str(), op));
            } else {
                let allowed = ["parameters", "summary", "description", "servers"];
                assert!(
                    allowed.contains(&key.as_str()),
                    "{path}: unexpected key {key}"
                );
            }
        }
    }
    out
}

/// Follows a local `$ref` (one level at a time, until none is left).
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    while let Some(target) = value.get("$ref").and_then(Value::as_str) {
        let pointer = target.strip_prefix('#').expect("only local $refs");
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {target} resolves to nothing"));
    }
    value
}

/// Whether the path's operation needs credentials (its own `security`, else the document's).
fn needs_credentials(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    let alternatives = security.as_array().expect("security is an array");
    // `{}` among the alternatives makes credentials optional.
    !alternatives.is_empty()
        && !alternatives
            .iter()
            .any(|a| a.as_object().is_some_and(serde_json::Map::is_empty))
}

fn concrete(template: &str) -> String {
    template
        .replace("{name}", "digits")
        .replace("{version}", "1")
}

#[test]
fn documents_exactly_the_routes_of_the_router() {
    let server = TestServer::start();
    let doc = document(&server);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (path.to_owned(), method.to_owned()))
        .collect();
    let routed: BTreeSet<(String, String)> = CATALOGUE
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .split(", ")
                .map(|m| (path.to_string(), m.to_ascii_lowercase()))
        })
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "src/api/openapi.json and router::CATALOGUE disagree\n  \
         routed, not documented: {missing:?}\n  documented, not routed: {extra:?}"
    );
}

#[test]
fn every_operation_has_schemas_and_every_ref_resolves() {
    let server = TestServer::start();
    let doc = document(&server);
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target}: not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "$ref {target} resolves to nothing"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id), "{at}: operationId {id} used twice");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}"));
        let mut with_schema = 0;
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(
                response["description"].is_string(),
                "{at} {status}: no description"
            );
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                assert!(
                    content["schema"].is_object(),
                    "{at} {status} {media}: no schema"
                );
                with_schema += 1;
            }
            if method == "head" && status.starts_with('2') {
                assert!(
                    response.get("content").is_none(),
                    "{at} {status}: HEAD has no body"
                );
            }
        }
        assert!(
            with_schema > 0 || method == "head",
            "{at}: no response has a schema"
        );
        if needs_credentials(&doc, op) {
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{at}: {status} not documented"
                );
            }
        }
        if let Some(body) = op.get("requestBody") {
            let body = resolve(&doc, body);
            let content = body["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}"));
            assert!(!content.is_empty(), "{at}: request body without content");
            for (media, c) in content {
                assert!(c["schema"].is_object(), "{at} request {media}: no schema");
            }
        }
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The live server answers each routed GET and HEAD with a documented status: open routes
/// without credentials, the others 401 without and as documented with the admin key; JSON
/// bodies fit their documented schema.
#[test]
fn live_answers_are_documented() {
    let server = TestServer::start();
    let doc = document(&server);
    let routed: BTreeSet<&str> = CATALOGUE.iter().map(|(path, _)| *path).collect();
    let mut checked = 0;
    for (template, method, op) in operations(&doc) {
        // Routes missing from the router are documents_exactly_the_routes_of_the_router's.
        if !routed.contains(template) || !matches!(method, "get" | "head") {
            continue;
        }
        let path = concrete(template);
        let verb = method.to_ascii_uppercase();
        let at = format!("{verb} {path}");
        let anonymous = send(&server, &verb, &path, &[], b"");
        if needs_credentials(&doc, op) {
            assert_eq!(anonymous.status, 401, "{at} without credentials");
            check(&doc, op, &anonymous, &at);
            let key = [("X-API-Key", server.key.as_str())];
            check(&doc, op, &send(&server, &verb, &path, &key, b""), &at);
        } else {
            check(&doc, op, &anonymous, &at);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} GET/HEAD operations checked");

    let (_, _, infer) = operations(&doc)
        .into_iter()
        .find(|(path, method, _)| *path == "/v2/models/{name}/infer" && *method == "post")
        .expect("infer documented");
    let body = format!(
        r#"{{"id":"7","inputs":[{{"name":"input","shape":[1,64],"datatype":"FP32","data":{:?}}}]}}"#,
        [0.0f32; 64]
    );
    let r = server.post_json("/v2/models/digits/infer", &body);
    assert_eq!(r.status, 200);
    check(&doc, infer, &r, "POST /v2/models/digits/infer");
}

fn send(
    server: &TestServer,
    verb: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut conn = server.connect();
    conn.send(&raw_request(verb, path, headers, body));
    conn.try_response(verb == "HEAD").expect("a response")
}

/// The answer's status is documented for `op`; its media type is one documented for that
/// status (or it has no body where none is documented); a JSON body fits the schema.
fn check(doc: &Value, op: &Value, r: &Resp, at: &str) {
    let status = r.status.to_string();
    let documented = op["responses"]
        .get(&status)
        .unwrap_or_else(|| panic!("{at}: answered {status}, which is not documented"));
    let documented = resolve(doc, documented);
    if at.starts_with("HEAD ") {
        assert!(r.body.is_empty(), "{at}: HEAD answered with a body");
        return;
    }
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(
            r.body.is_empty(),
            "{at} {status}: body where none is documented"
        );
        return;
    };
    let media = r.header("content-type").unwrap_or_default();
    let base = |m: &str| {
        m.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (_, entry) = content
        .iter()
        .find(|(m, _)| base(m) == base(media))
        .unwrap_or_else(|| panic!("{at} {status}: Content-Type {media:?} is not documented"));
    if base(media) == "application/json"
        && let Err(e) = conforms(doc, &entry["schema"], &r.json(), "body")
    {
        panic!("{at} {status}: {e}\n{}", String::from_utf8_lossy(&r.body));
    }
}

/// Checks a value against a schema of the document, for the keywords the document uses:
/// `$ref`, `type`, `const`, `enum`, `minimum`, `required`, `properties`,
/// `additionalProperties`, `items`, `anyOf` and `oneOf` (taken as "any of": enough here).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(c) = schema.get("const").filter(|c| *c != value) {
        return Err(format!("{at}: {value} is not {c}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {e:?}"));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(format!("{at}: {n} is below {min}"));
    }
    if let Value::Object(map) = value {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !map.contains_key(key) {
                return Err(format!("{at}: {key} is missing"));
            }
        }
        for (key, v) in map {
            let at = format!("{at}.{key}");
            let declared = schema.get("properties").and_then(|p| p.get(key));
            match (declared, schema.get("additionalProperties")) {
                (Some(s), _) => conforms(doc, s, v, &at)?,
                (None, Some(Value::Bool(false))) => return Err(format!("{at}: not allowed")),
                (None, Some(s)) if s.is_object() => conforms(doc, s, v, &at)?,
                _ => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, s, v, &format!("{at}[{i}]"))?;
        }
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(keyword).and_then(Value::as_array)
            && !alternatives
                .iter()
                .any(|s| conforms(doc, s, value, at).is_ok())
        {
            return Err(format!("{at}: {value} fits none of its {keyword}"));
        }
    }
    Ok(())
}
