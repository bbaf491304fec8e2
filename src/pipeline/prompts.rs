//! Prompt templates, one per stage, versioned with the code in
//! `src/pipeline/prompts/*.jinja` (minijinja syntax). Each renders a system
//! part and a user part separated by a line `=== USER ===`.

use std::sync::LazyLock;

use minijinja::Environment;
use serde::Serialize;

use crate::providers::ChatMessage;

/// The template names.
pub const RESEARCH: &str = "research";
/// Outline stage.
pub const OUTLINE: &str = "outline";
/// Script stage (one segment).
pub const SCRIPT: &str = "script";
/// Assembly stage.
pub const ASSEMBLY: &str = "assembly";

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        (RESEARCH, include_str!("prompts/research.jinja")),
        (OUTLINE, include_str!("prompts/outline.jinja")),
        (SCRIPT, include_str!("prompts/script.jinja")),
        (ASSEMBLY, include_str!("prompts/assembly.jinja")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // Caught by the tests below; logged in case a build slips through.
            tracing::error!(template = name, error = %e, "invalid prompt template");
        }
    }
    env
});

/// Renders template `name` with `context` into `[system, user]` messages.
///
/// Errors: a template that fails to render (a bug caught by tests).
pub fn render(name: &str, context: impl Serialize) -> anyhow::Result<Vec<ChatMessage>> {
    let text = TEMPLATES.get_template(name)?.render(minijinja::value::Serde(context))?;
    let (system, user) = text
        .split_once("=== USER ===")
        .ok_or_else(|| anyhow::anyhow!("template {name} has no === USER === line"))?;
    Ok(vec![ChatMessage::system(system.trim()), ChatMessage::user(user.trim())])
}

/// English name of a language, for prompts ("Write in French").
pub fn language_name(tag: &str) -> String {
    let primary = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
    let name = match primary.as_str() {
        "en" => "English",
        "zh" => {
            if tag.contains("Hant") || tag.ends_with("TW") || tag.ends_with("HK") {
                "Chinese (Traditional characters)"
            } else {
                "Chinese (Simplified characters)"
            }
        }
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "it" => "Italian",
        "pt" => "Portuguese",
        "nl" => "Dutch",
        "ru" => "Russian",
        "ja" => "Japanese",
        "ko" => "Korean",
        "pl" => "Polish",
        "sv" => "Swedish",
        "da" => "Danish",
        "fi" => "Finnish",
        "tr" => "Turkish",
        "ar" => "Arabic",
        "hi" => "Hindi",
        "uk" => "Ukrainian",
        _ => return tag.to_owned(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_renders_with_its_variables() {
        let hosts = json!([{"name": "Ada", "persona": "curious"}, {"name": "Grace", "persona": null}]);
        let sources = json!([{"number": 1, "title": "Cats", "url": "https://x.org", "passage": "Cats purr."}]);
        let research = render(RESEARCH, json!({"topic": "Cats", "format": "deep dive", "minutes": 5, "language": "en", "language_name": "English", "audience": null, "instructions": null})).unwrap();
        assert!(research[1].content.contains("Cats"));
        let outline = render(
            OUTLINE,
            json!({"topic": "Cats", "format": "deep dive", "format_guidance": "g", "hosts": hosts, "minutes": 5,
            "language": "fr", "language_name": "French", "audience": null, "tone": "warm", "instructions": null,
            "min_segments": 3, "max_segments": 8, "suggested_segments": 4, "sources": sources, "notes": null}),
        )
        .unwrap();
        assert!(outline[0].content.contains("French"));
        assert!(outline[1].content.contains("[1] Cats <https://x.org>"));
        assert!(outline[1].content.contains("Tone: warm"));
        let script = render(SCRIPT, json!({"topic": "Cats", "title": "T", "format": "debate", "format_guidance": "g", "hosts": hosts,
            "language": "en", "language_name": "English", "audience": null, "tone": null, "instructions": null,
            "outline": [{"number": 1, "title": "A", "goal": "g"}], "segment": {"number": 1, "title": "A", "goal": "g", "key_points": ["p"]},
            "count": 1, "previous": null, "next": null, "word_budget": 120, "turns_hint": 4, "sources": sources})).unwrap();
        assert!(script[0].content.contains("exactly: Ada, Grace"));
        assert!(script[1].content.contains("Word budget: 120 words"));
        assert!(script[1].content.contains("This is the first segment"));
        let assembly = render(
            ASSEMBLY,
            json!({"topic": "Cats", "title": "T", "hook": "h", "format": "brief", "hosts": hosts,
            "language": "en", "language_name": "English", "segments": [{"title": "A", "summary": "s"}],
            "intro_budget": 30, "outro_budget": 30, "sources": sources}),
        )
        .unwrap();
        assert!(assembly[1].content.contains("Word budget: 30 words"));
    }
}
