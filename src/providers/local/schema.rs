//! The JSON Schema subset that guided generation supports, compiled into a
//! small tree the decoder walks.
//!
//! Supported (anything else is rejected up front with
//! [`LocalError::UnsupportedSchema`](super::LocalError)):
//! - `{"type":"object","properties":{..},"required":[..]}`: every property is
//!   emitted, in declared order (serde_json's `preserve_order` keeps it);
//!   `required` may only name declared properties.
//! - `{"type":"array","items":S,"minItems":a,"maxItems":b}`, plus
//!   `"uniqueItems":true` when the items are an enum or booleans
//! - `{"type":"string","minLength":m,"maxLength":n}` (lengths in Unicode
//!   scalar values, as JSON Schema counts them)
//! - `{"type":"string","enum":[..]}`, `{"type":"integer","enum":[..]}`
//! - `{"type":"integer","minimum":a,"maximum":b}`
//! - `{"type":"boolean"}`
//!
//! Annotations (`title`, `description`, `$schema`, `$id`, `$comment`,
//! `examples`, `default`, `additionalProperties`) are accepted and ignored:
//! the output never has extra properties anyway.

use serde_json::{Map, Value};

use super::LocalError;

/// Default `maxLength` when a string schema gives none, in characters.
pub(crate) const DEFAULT_MAX_LENGTH: usize = 2000;

/// A compiled schema node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Object {
        props: Vec<(String, Node)>,
    },
    Array {
        items: Box<Node>,
        min: usize,
        max: usize,
        unique: bool,
    },
    String {
        min: usize,
        max: usize,
    },
    StringEnum(Vec<String>),
    IntEnum(Vec<i64>),
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "examples",
    "default",
    "additionalProperties",
];

fn err(path: &str, reason: impl Into<String>) -> LocalError {
    let path = if path.is_empty() {
        "#".to_string()
    } else {
        format!("#{path}")
    };
    LocalError::UnsupportedSchema {
        path,
        reason: reason.into(),
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), LocalError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
            return Err(err(path, format!("keyword `{k}` is not supported here")));
        }
    }
    Ok(())
}

fn get_usize(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<usize>, LocalError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| err(path, format!("`{key}` must be a non-negative integer"))),
    }
}

fn get_i64(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, LocalError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| err(path, format!("`{key}` must be an integer"))),
    }
}

/// Compiles `schema` into a [`Node`] tree, or explains what is unsupported.
pub(crate) fn compile(schema: &Value) -> Result<Node, LocalError> {
    compile_at(schema, "", 0)
}

fn compile_at(schema: &Value, path: &str, depth: usize) -> Result<Node, LocalError> {
    if depth > 32 {
        return Err(err(path, "schema nests deeper than 32 levels"));
    }
    let obj = schema
        .as_object()
        .ok_or_else(|| err(path, "a schema must be a JSON object"))?;
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(err(path, "`type` must be a single type name")),
        None => return Err(err(path, "`type` is required")),
    };
    match ty {
        "object" => {
            check_keys(obj, &["type", "properties", "required"], path)?;
            let props = match obj.get("properties") {
                None => Map::new(),
                Some(Value::Object(p)) => p.clone(),
                Some(_) => return Err(err(path, "`properties` must be an object")),
            };
            if let Some(req) = obj.get("required") {
                let req = req.as_array().ok_or_else(|| err(path, "`required` must be an array"))?;
                for r in req {
                    let name = r
                        .as_str()
                        .ok_or_else(|| err(path, "`required` entries must be strings"))?;
                    if !props.contains_key(name) {
                        return Err(err(path, format!("required property `{name}` is not declared")));
                    }
                }
            }
            let mut out = Vec::with_capacity(props.len());
            for (name, sub) in &props {
                out.push((
                    name.clone(),
                    compile_at(sub, &format!("{path}/properties/{name}"), depth + 1)?,
                ));
            }
            Ok(Node::Object { props: out })
        }
        "array" => {
            check_keys(obj, &["type", "items", "minItems", "maxItems", "uniqueItems"], path)?;
            let items = obj.get("items").ok_or_else(|| err(path, "`items` is required"))?;
            let items = compile_at(items, &format!("{path}/items"), depth + 1)?;
            let min = get_usize(obj, "minItems", path)?.unwrap_or(0);
            let mut max = get_usize(obj, "maxItems", path)?.unwrap_or(usize::MAX);
            let unique = match obj.get("uniqueItems") {
                None | Some(Value::Bool(false)) => false,
                Some(Value::Bool(true)) => true,
                Some(_) => return Err(err(path, "`uniqueItems` must be a boolean")),
            };
            if unique {
                let n = match &items {
                    Node::StringEnum(o) => o.iter().collect::<std::collections::HashSet<_>>().len(),
                    Node::IntEnum(o) => o.iter().collect::<std::collections::HashSet<_>>().len(),
                    Node::Boolean => 2,
                    _ => {
                        return Err(err(
                            path,
                            "`uniqueItems` is only supported for arrays of enums or booleans",
                        ));
                    }
                };
                if min > n {
                    return Err(err(path, "`minItems` exceeds the number of distinct values"));
                }
                max = max.min(n);
            }
            if min > max {
                return Err(err(path, "`minItems` is larger than `maxItems`"));
            }
            Ok(Node::Array {
                items: Box::new(items),
                min,
                max,
                unique,
            })
        }
        "string" => {
            if let Some(e) = obj.get("enum") {
                check_keys(obj, &["type", "enum"], path)?;
                let opts = e.as_array().ok_or_else(|| err(path, "`enum` must be an array"))?;
                let opts: Option<Vec<String>> = opts.iter().map(|v| v.as_str().map(str::to_string)).collect();
                let opts = opts.ok_or_else(|| err(path, "string `enum` entries must be strings"))?;
                if opts.is_empty() {
                    return Err(err(path, "`enum` is empty"));
                }
                return Ok(Node::StringEnum(opts));
            }
            check_keys(obj, &["type", "minLength", "maxLength"], path)?;
            let min = get_usize(obj, "minLength", path)?.unwrap_or(0);
            let max = get_usize(obj, "maxLength", path)?.unwrap_or(DEFAULT_MAX_LENGTH);
            if min > max {
                return Err(err(path, "`minLength` is larger than `maxLength`"));
            }
            Ok(Node::String { min, max })
        }
        "integer" => {
            if let Some(e) = obj.get("enum") {
                check_keys(obj, &["type", "enum"], path)?;
                let opts = e.as_array().ok_or_else(|| err(path, "`enum` must be an array"))?;
                let opts: Option<Vec<i64>> = opts.iter().map(Value::as_i64).collect();
                let opts = opts.ok_or_else(|| err(path, "integer `enum` entries must be integers"))?;
                if opts.is_empty() {
                    return Err(err(path, "`enum` is empty"));
                }
                return Ok(Node::IntEnum(opts));
            }
            check_keys(obj, &["type", "minimum", "maximum"], path)?;
            // Keep 18 digits at most so every candidate fits an i64 with room.
            const LIMIT: i64 = 999_999_999_999_999_999;
            let min = get_i64(obj, "minimum", path)?.unwrap_or(-LIMIT).max(-LIMIT);
            let max = get_i64(obj, "maximum", path)?.unwrap_or(LIMIT).min(LIMIT);
            if min > max {
                return Err(err(path, "`minimum` is larger than `maximum`"));
            }
            Ok(Node::Integer { min, max })
        }
        "boolean" => {
            check_keys(obj, &["type"], path)?;
            Ok(Node::Boolean)
        }
        other => Err(err(path, format!("type `{other}` is not supported"))),
    }
}

/// Checks `value` against `schema` (the same subset), e.g. for output from
/// a hosted provider. Every declared property must be present (the walker
/// always emits all of them); extra properties are rejected. Returns the
/// first violation as `"<json pointer>: <problem>"`.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let node = compile(schema).map_err(|e| e.to_string())?;
    check(&node, value, "")
}

fn check(node: &Node, v: &Value, at: &str) -> Result<(), String> {
    let fail = |m: String| Err(format!("#{at}: {m}"));
    match node {
        Node::Object { props } => {
            let Some(obj) = v.as_object() else {
                return fail("expected an object".into());
            };
            for (k, sub) in props {
                match obj.get(k) {
                    Some(x) => check(sub, x, &format!("{at}/{k}"))?,
                    None => return fail(format!("missing property `{k}`")),
                }
            }
            if let Some(extra) = obj.keys().find(|k| !props.iter().any(|(p, _)| p == *k)) {
                return fail(format!("unexpected property `{extra}`"));
            }
            Ok(())
        }
        Node::Array {
            items,
            min,
            max,
            unique,
        } => {
            let Some(a) = v.as_array() else {
                return fail("expected an array".into());
            };
            if a.len() < *min || a.len() > *max {
                return fail(format!("{} items, expected {min}..={max}", a.len()));
            }
            if *unique && a.iter().enumerate().any(|(i, x)| a[..i].contains(x)) {
                return fail("items are not unique".into());
            }
            a.iter()
                .enumerate()
                .try_for_each(|(i, x)| check(items, x, &format!("{at}/{i}")))
        }
        Node::String { min, max } => {
            let Some(s) = v.as_str() else {
                return fail("expected a string".into());
            };
            let n = s.chars().count();
            if n < *min || n > *max {
                return fail(format!("length {n}, expected {min}..={max}"));
            }
            Ok(())
        }
        Node::StringEnum(opts) => match v.as_str() {
            Some(s) if opts.iter().any(|o| o == s) => Ok(()),
            _ => fail(format!("expected one of {opts:?}")),
        },
        Node::IntEnum(opts) => match v.as_i64() {
            Some(n) if opts.contains(&n) => Ok(()),
            _ => fail(format!("expected one of {opts:?}")),
        },
        Node::Integer { min, max } => match v.as_i64() {
            Some(n) if (*min..=*max).contains(&n) => Ok(()),
            _ => fail(format!("expected an integer in {min}..={max}")),
        },
        Node::Boolean => {
            if v.is_boolean() {
                Ok(())
            } else {
                fail("expected a boolean".into())
            }
        }
    }
}

/// The shortest JSON text valid for `node`, in the decoder's formatting
/// (`", "` between members, `": "` after keys). Used to estimate how many
/// tokens must stay in reserve to close the structure.
pub(crate) fn skeleton(node: &Node) -> String {
    match node {
        Node::Object { props } => {
            let inner: Vec<String> = props
                .iter()
                .map(|(k, v)| format!("{}: {}", json_str(k), skeleton(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Node::Array { items, min, .. } => {
            let one = skeleton(items);
            let inner: Vec<&str> = (0..*min).map(|_| one.as_str()).collect();
            format!("[{}]", inner.join(", "))
        }
        Node::String { min, .. } => format!("\"{}\"", "a ".repeat(*min).trim_end()),
        Node::StringEnum(opts) => {
            let shortest = opts.iter().min_by_key(|s| s.len()).map(String::as_str).unwrap_or("");
            json_str(shortest)
        }
        Node::IntEnum(opts) => opts
            .iter()
            .map(|n| n.to_string())
            .min_by_key(String::len)
            .unwrap_or_default(),
        Node::Integer { min, max } => {
            if *min <= 0 && *max >= 0 {
                "0".into()
            } else if *min > 0 {
                min.to_string()
            } else {
                max.to_string()
            }
        }
        Node::Boolean => "false".into(),
    }
}

/// Number of free-text strings `node` must contain at minimum.
pub(crate) fn required_strings(node: &Node) -> usize {
    match node {
        Node::Object { props } => props.iter().map(|(_, v)| required_strings(v)).sum(),
        Node::Array { items, min, .. } => min.saturating_mul(required_strings(items)),
        Node::String { .. } => 1,
        _ => 0,
    }
}

/// JSON-encodes a string (with quotes).
pub(crate) fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_dialogue_schema_in_declared_order() {
        let s = json!({"type":"object","properties":{"turns":{"type":"array","minItems":4,"maxItems":8,
            "items":{"type":"object","properties":{
                "speaker":{"type":"string","enum":["Alice","Bob"]},
                "text":{"type":"string","minLength":1,"maxLength":400},
                "citations":{"type":"array","minItems":0,"maxItems":2,"items":{"type":"integer","enum":[1,2]}}},
                "required":["speaker","text","citations"]}}},"required":["turns"]});
        let n = compile(&s).unwrap();
        let Node::Object { props } = &n else {
            panic!("not an object")
        };
        let Node::Array {
            items,
            min: 4,
            max: 8,
            unique: false,
        } = &props[0].1
        else {
            panic!("bad array")
        };
        let Node::Object { props } = items.as_ref() else {
            panic!("bad item")
        };
        let names: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["speaker", "text", "citations"]);
        assert_eq!(props[1].1, Node::String { min: 1, max: 400 });
        assert_eq!(
            skeleton(&n),
            r#"{"turns": [{"speaker": "Bob", "text": "a", "citations": []}, {"speaker": "Bob", "text": "a", "citations": []}, {"speaker": "Bob", "text": "a", "citations": []}, {"speaker": "Bob", "text": "a", "citations": []}]}"#
        );
        assert_eq!(required_strings(&n), 4);
    }

    #[test]
    fn rejects_unsupported_keywords_with_a_path() {
        let cases = [
            json!({"type":"number"}),
            json!({"type":"string","pattern":"a+"}),
            json!({"type":["string","null"]}),
            json!({"type":"object","properties":{"a":{"type":"string","format":"date"}}}),
            json!({"anyOf":[{"type":"string"}]}),
            json!({"type":"array","items":{"type":"integer"},"minItems":3,"maxItems":2}),
            json!({"type":"object","properties":{},"required":["x"]}),
            json!({"type":"string","enum":[]}),
            json!({"type":"integer","enum":[1,"2"]}),
        ];
        for c in cases {
            let e = compile(&c).unwrap_err();
            assert!(matches!(e, LocalError::UnsupportedSchema { .. }), "{c}: {e}");
        }
        let e = compile(&json!({"type":"object","properties":{"a":{"type":"string","format":"date"}}})).unwrap_err();
        assert!(e.to_string().contains("#/properties/a"), "{e}");
    }

    #[test]
    fn validates_values() {
        let s = json!({"type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":3},
            "t":{"type":"array","maxItems":1,"items":{"type":"string","maxLength":2}}}});
        assert_eq!(validate(&s, &json!({"n":2,"t":["ab"]})), Ok(()));
        assert!(validate(&s, &json!({"n":4,"t":[]})).unwrap_err().starts_with("#/n"));
        assert!(
            validate(&s, &json!({"n":1,"t":["abc"]}))
                .unwrap_err()
                .starts_with("#/t/0")
        );
        assert!(validate(&s, &json!({"n":1})).is_err());
        assert!(validate(&s, &json!({"n":1,"t":[],"x":0})).is_err());
    }

    #[test]
    fn accepts_annotations() {
        let s = json!({"type":"object","title":"t","description":"d","additionalProperties":false,
            "properties":{"ok":{"type":"boolean","description":"x"}}});
        assert_eq!(
            compile(&s).unwrap(),
            Node::Object {
                props: vec![("ok".into(), Node::Boolean)]
            }
        );
    }
}
