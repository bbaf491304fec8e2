//! JSON Schemas of model outputs (OpenAI structured outputs, strict mode:
//! every object closed and fully required). Length bounds (`maxLength`,
//! `minItems`, `maxItems`) are part of the contract; clients whose dialect
//! lacks one strip it (see `providers::openai`), and the local model uses
//! them to bound what it writes.

use serde_json::{Value, json};

use crate::providers::JsonSchema;

fn string(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max})
}

fn citations(sources: &[u32]) -> Value {
    if sources.is_empty() {
        json!({"type": "array", "maxItems": 0, "items": {"type": "integer"}})
    } else {
        json!({"type": "array", "minItems": 0, "maxItems": 3, "items": {"type": "integer", "enum": sources}})
    }
}

fn turn(hosts: &[String], sources: &[u32], max_text: usize) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["speaker", "text", "citations"],
        "properties": {
            "speaker": {"type": "string", "enum": hosts},
            "text": string(max_text),
            "citations": citations(sources),
        }
    })
}

/// The outline: title, hook, 3 to 8 segments.
pub fn outline(sources: &[u32], min_segments: usize, max_segments: usize) -> JsonSchema {
    JsonSchema {
        name: "podcast_outline".into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["title", "hook", "segments"],
            "properties": {
                "title": string(100),
                "hook": string(400),
                "segments": {
                    "type": "array",
                    "minItems": min_segments,
                    "maxItems": max_segments,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["title", "goal", "keyPoints", "sources"],
                        "properties": {
                            "title": string(100),
                            "goal": string(300),
                            "keyPoints": {"type": "array", "minItems": 1, "maxItems": 5, "items": string(200)},
                            "sources": citations(sources),
                        }
                    }
                }
            }
        }),
    }
}

/// One segment's turns, `(min turns, max turns, max characters per turn)`,
/// by the hosts, citing `sources`.
pub fn segment(hosts: &[String], sources: &[u32], bounds: (usize, usize, usize)) -> JsonSchema {
    let (min_turns, max_turns, max_chars) = bounds;
    JsonSchema {
        name: "podcast_segment".into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["turns"],
            "properties": {
                "turns": {"type": "array", "minItems": min_turns, "maxItems": max_turns, "items": turn(hosts, sources, max_chars)}
            }
        }),
    }
}

/// Intro, outro and listing metadata; each of intro and outro has at most
/// `framing_turns` turns of at most `turn_chars` characters.
pub fn assembly(hosts: &[String], sources: &[u32], framing_turns: usize, turn_chars: usize) -> JsonSchema {
    JsonSchema {
        name: "podcast_assembly".into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["title", "description", "tags", "intro", "outro"],
            "properties": {
                "title": string(80),
                "description": string(600),
                "tags": {"type": "array", "minItems": 3, "maxItems": 6, "items": string(30)},
                "intro": {"type": "array", "minItems": 1, "maxItems": framing_turns.max(1), "items": turn(hosts, sources, turn_chars)},
                "outro": {"type": "array", "minItems": 1, "maxItems": framing_turns.max(1), "items": turn(hosts, sources, turn_chars)},
            }
        }),
    }
}
