//! Tests over the shared corpus and a local axum server. No network beyond 127.0.0.1.

mod corpus;
mod fetch;

use std::path::PathBuf;

/// The test corpus: real documents by others, copied into
/// `tests/fixtures/corpus` with their licences (see its SOURCES.md).
pub(super) fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

pub(super) fn corpus(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
