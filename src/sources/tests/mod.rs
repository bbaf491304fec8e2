//! Tests over the shared corpus and a local axum server. No network beyond 127.0.0.1.

mod corpus;
mod fetch;

use std::path::PathBuf;

/// The shared corpus: `$PODFORGE_CORPUS_DIR`, else the first `shared/corpus` found walking up
/// from the crate root (`/work/proto/sources` → `/work/shared/corpus`; in the service's CI,
/// `shared/` lies beside the clone).
pub(super) fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PODFORGE_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared").join("corpus");
        if candidate.join("SOURCES.md").is_file() {
            return candidate;
        }
        assert!(
            dir.pop(),
            "shared/corpus not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

pub(super) fn corpus(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
