//! The checked-in schema.graphql is what `podforge schema` prints, and every
//! type, field and argument is described.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

#[test]
fn checked_in_schema_matches_the_code() {
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    let current = podforge::graphql::sdl();
    assert!(
        checked_in == current,
        "schema.graphql is stale: run `cargo run -q -- schema > schema.graphql` and commit it"
    );
}

#[test]
fn every_type_field_and_argument_has_a_description() {
    let doc = parse_schema(podforge::graphql::sdl()).unwrap();
    let mut missing = Vec::new();
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else { continue };
        let t = &t.node;
        let name = t.name.node.as_str();
        if t.description.is_none() && !["Boolean", "String", "Int", "Float", "ID"].contains(&name) {
            missing.push(name.to_owned());
        }
        match &t.kind {
            TypeKind::Object(o) => {
                for f in &o.fields {
                    if f.node.description.is_none() {
                        missing.push(format!("{name}.{}", f.node.name.node));
                    }
                    for a in &f.node.arguments {
                        if a.node.description.is_none() {
                            missing.push(format!("{name}.{}({})", f.node.name.node, a.node.name.node));
                        }
                    }
                }
            }
            TypeKind::InputObject(o) => {
                for f in &o.fields {
                    if f.node.description.is_none() {
                        missing.push(format!("{name}.{}", f.node.name.node));
                    }
                }
            }
            TypeKind::Enum(e) => {
                for v in &e.values {
                    if v.node.description.is_none() {
                        missing.push(format!("{name}.{}", v.node.value.node));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

/// A bound: `(min, max)`, `min` absent for "up to" and "at most".
type Bound = (Option<u64>, u64);

/// Bounds ("3 to 500", "up to 200", "at most 20") stated in a description, in order.
fn stated_bounds(description: &str) -> Vec<Bound> {
    let number = |s: &str| s.replace(',', "").parse::<u64>().unwrap();
    let re = regex::Regex::new(r"(?i)(\d[\d,]*) to (\d[\d,]*)|(?:up to|at most) (\d[\d,]*)").unwrap();
    re.captures_iter(description)
        .map(|c| match (c.get(1), c.get(2), c.get(3)) {
            (Some(min), Some(max), _) => (Some(number(min.as_str())), number(max.as_str())),
            (_, _, Some(max)) => (None, number(max.as_str())),
            _ => unreachable!(),
        })
        .collect()
}

/// Every numeric bound an input field's or argument's description states is
/// the bound the code enforces: the table below takes each from the constant
/// the validation uses, and a description that states a bound the table does
/// not list fails too (so a new one cannot drift unseen).
#[test]
fn bounds_stated_in_descriptions_are_the_codes() {
    use podforge::auth::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
    use podforge::services::accounts::MAX_EMAIL_BYTES;
    use podforge::services::generation as g;
    use podforge::services::library as l;
    let u = |n: usize| n as u64;
    let range = |r: std::ops::RangeInclusive<usize>| (Some(u(*r.start())), u(*r.end()));
    let expected: Vec<(&str, Vec<Bound>)> = vec![
        ("GeneratePodcastInput.topic", vec![range(g::TOPIC_CHARS)]),
        ("GeneratePodcastInput.sources", vec![(None, u(g::MAX_SOURCES))]),
        (
            "GeneratePodcastInput.targetMinutes",
            vec![(Some(*g::TARGET_MINUTES.start() as u64), *g::TARGET_MINUTES.end() as u64)],
        ),
        ("GeneratePodcastInput.hosts", vec![range(g::HOSTS)]),
        ("GeneratePodcastInput.audience", vec![(None, u(g::MAX_AUDIENCE_CHARS))]),
        ("GeneratePodcastInput.tone", vec![(None, u(g::MAX_TONE_CHARS))]),
        (
            "GeneratePodcastInput.instructions",
            vec![(None, u(g::MAX_INSTRUCTIONS_CHARS))],
        ),
        (
            "GeneratePodcastInput.idempotencyKey",
            vec![(None, u(g::MAX_IDEMPOTENCY_KEY_CHARS))],
        ),
        ("HostInput.name", vec![range(g::HOST_NAME_CHARS)]),
        ("HostInput.persona", vec![(None, u(g::MAX_PERSONA_CHARS))]),
        ("SourceInput.text", vec![(None, u(g::MAX_SOURCE_TEXT_CHARS))]),
        ("RegisterInput.email", vec![(None, u(MAX_EMAIL_BYTES))]),
        (
            "RegisterInput.password",
            vec![range(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS)],
        ),
        ("UpdatePodcastInput.title", vec![(Some(1), u(l::MAX_TITLE_CHARS))]),
        (
            "UpdatePodcastInput.description",
            vec![(None, u(l::MAX_DESCRIPTION_CHARS))],
        ),
        (
            "UpdatePodcastInput.tags",
            vec![(None, u(l::MAX_TAGS)), (Some(1), u(l::MAX_TAG_CHARS))],
        ),
        ("PodcastFilter.search", vec![(None, u(l::MAX_SEARCH_CHARS))]),
        ("Query.podcasts(first)", vec![(Some(0), l::MAX_PAGE_SIZE as u64)]),
        ("Mutation.regenerateAudio(hosts)", vec![range(g::HOSTS)]),
        (
            "Audio.url(expiresInSeconds)",
            vec![(
                Some(podforge::graphql::types::MEDIA_URL_TTL_MIN as u64),
                podforge::graphql::types::MEDIA_URL_TTL_MAX as u64,
            )],
        ),
    ];
    let doc = parse_schema(podforge::graphql::sdl()).unwrap();
    let mut stated = Vec::new();
    for def in &doc.definitions {
        let TypeSystemDefinition::Type(t) = def else { continue };
        let name = t.node.name.node.as_str();
        match &t.node.kind {
            TypeKind::InputObject(o) => {
                for f in &o.fields {
                    if let Some(d) = &f.node.description {
                        stated.push((format!("{name}.{}", f.node.name.node), stated_bounds(&d.node)));
                    }
                }
            }
            TypeKind::Object(o) => {
                for f in &o.fields {
                    for a in &f.node.arguments {
                        if let Some(d) = &a.node.description {
                            stated.push((
                                format!("{name}.{}({})", f.node.name.node, a.node.name.node),
                                stated_bounds(&d.node),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let stated: Vec<_> = stated.into_iter().filter(|(_, b)| !b.is_empty()).collect();
    for (field, bounds) in &stated {
        let code = expected
            .iter()
            .find(|(f, _)| f == field)
            .unwrap_or_else(|| panic!("{field} states {bounds:?}: add the code's bound to this table"));
        assert_eq!(bounds, &code.1, "{field}: the description's bounds are not the code's");
    }
    for (field, _) in &expected {
        assert!(
            stated.iter().any(|(f, _)| f == field),
            "{field} states no bound any more: drop it from the table"
        );
    }
}
