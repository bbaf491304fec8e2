//! Automatic persisted queries: Apollo's APQ protocol
//! (<https://github.com/apollographql/apollo-link-persisted-queries#protocol>).
//!
//! A client sends `extensions.persistedQuery = {version: 1, sha256Hash}`
//! without the document. If this process knows the hash, the request runs
//! with the stored document; if not, it is answered with the error
//! `PersistedQueryNotFound` (`extensions.code` PERSISTED_QUERY_NOT_FOUND), on
//! which Apollo's persisted-query link and urql's `persistedExchange` send the
//! document again together with its hash, and this registers it. Works over
//! `POST` and `GET`.
//!
//! The cache is an LRU in each process, bounded by entry count
//! (`PODFORGE_APQ_CACHE_ENTRIES`, default 2000; each entry is at most
//! `PODFORGE_MAX_QUERY_BYTES`). It is not shared between instances, on
//! purpose: a miss costs one extra round trip, after which that instance
//! knows the document too, so a shared store (a table, Redis) would buy
//! little and cost a dependency and a network call per request.
//!
//! Why not async-graphql's `ApolloPersistedQueries`: it stores the parsed
//! document and hands it to the engine as already parsed, which skips the
//! `parse_query` hooks, and with them this service's document limits, cost
//! analysis and operation guards ([`super::limits`], [`super::cost`],
//! [`super::guard`]), and its errors carry no code. Here the stored text is
//! put back as the request's `query`, so a persisted document goes through
//! every check a sent one does.
//!
//! Registration checks the hash against the document (a mismatch is
//! BAD_REQUEST), so nobody can store a document under another's hash; a
//! document is stored only once it parses.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerResult, Value, Variables};
use sha2::{Digest, Sha256};

use super::error::coded;

/// The error message Apollo's link and urql look for on a cache miss.
pub const NOT_FOUND_MESSAGE: &str = "PersistedQueryNotFound";
/// The error message that turns APQ off in Apollo's link.
pub const NOT_SUPPORTED_MESSAGE: &str = "PersistedQueryNotSupported";

/// A bounded least-recently-used map from a document's SHA-256 (lower-case
/// hex) to the document.
pub struct QueryCache {
    inner: Mutex<Lru>,
}

struct Lru {
    capacity: usize,
    /// Hash to (document, last use).
    entries: HashMap<String, (Arc<str>, u64)>,
    /// Last use to hash: the first entry is the least recently used.
    order: BTreeMap<u64, String>,
    clock: u64,
}

impl QueryCache {
    /// A cache of at most `capacity` documents (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Lru {
                capacity: capacity.max(1),
                entries: HashMap::new(),
                order: BTreeMap::new(),
                clock: 0,
            }),
        }
    }

    /// The document stored under `hash`, marked as just used.
    pub fn get(&self, hash: &str) -> Option<Arc<str>> {
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        lru.clock += 1;
        let now = lru.clock;
        let (document, used) = lru.entries.get_mut(hash)?;
        let (document, before) = (document.clone(), std::mem::replace(used, now));
        lru.order.remove(&before);
        lru.order.insert(now, hash.to_owned());
        Some(document)
    }

    /// Stores `document` under `hash`, evicting the least recently used
    /// entry when full.
    pub fn put(&self, hash: &str, document: &str) {
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        lru.clock += 1;
        let now = lru.clock;
        if let Some((_, used)) = lru.entries.get_mut(hash) {
            let before = std::mem::replace(used, now);
            lru.order.remove(&before);
            lru.order.insert(now, hash.to_owned());
            return;
        }
        while lru.entries.len() >= lru.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
        lru.entries.insert(hash.to_owned(), (Arc::from(document), now));
        lru.order.insert(now, hash.to_owned());
    }

    /// Number of stored documents.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 of `document`, lower-case hex: the APQ key.
pub fn hash(document: &str) -> String {
    Sha256::digest(document.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The APQ extension; `None` answers every hashed request
/// PERSISTED_QUERY_NOT_SUPPORTED (so clients stop hashing).
pub struct PersistedQueries {
    cache: Option<Arc<QueryCache>>,
}

impl PersistedQueries {
    /// With a cache of `entries` documents; 0 turns APQ off.
    pub fn new(entries: usize) -> Self {
        Self {
            cache: (entries > 0).then(|| Arc::new(QueryCache::new(entries))),
        }
    }
}

impl ExtensionFactory for PersistedQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Apq {
            cache: self.cache.clone(),
            register: Mutex::new(None),
        })
    }
}

/// One request's state.
struct Apq {
    cache: Option<Arc<QueryCache>>,
    /// A document sent with its hash, stored once it parses.
    register: Mutex<Option<String>>,
}

/// The `sha256Hash` of a version 1 `persistedQuery` extension.
fn requested_hash(value: &Value) -> Result<String, &'static str> {
    let Value::Object(fields) = value else {
        return Err("extensions.persistedQuery must be an object {version: 1, sha256Hash}");
    };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        _ => return Err("extensions.persistedQuery.version must be 1"),
    }
    match fields.get("sha256Hash") {
        Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err("extensions.persistedQuery.sha256Hash must be a SHA-256 in hex (64 characters)"),
    }
}

#[async_trait::async_trait]
impl Extension for Apq {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let Some(value) = request.extensions.0.remove("persistedQuery") else {
            return next.run(ctx, request).await;
        };
        let Some(cache) = &self.cache else {
            return Err(coded(NOT_SUPPORTED_MESSAGE, None, "PERSISTED_QUERY_NOT_SUPPORTED"));
        };
        let wanted = requested_hash(&value).map_err(|m| coded(m, None, "BAD_REQUEST"))?;
        if request.query.trim().is_empty() {
            match cache.get(&wanted) {
                Some(document) => request.query = document.to_string(),
                None => return Err(coded(NOT_FOUND_MESSAGE, None, "PERSISTED_QUERY_NOT_FOUND")),
            }
        } else {
            if hash(&request.query) != wanted {
                return Err(coded("provided sha does not match query", None, "BAD_REQUEST"));
            }
            *self.register.lock().unwrap_or_else(|p| p.into_inner()) = Some(wanted);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let register = self.register.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(hash), Some(cache)) = (register, &self.cache) {
            cache.put(&hash, query);
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_document_goes_first() {
        let cache = QueryCache::new(2);
        cache.put("a", "{ a }");
        cache.put("b", "{ b }");
        assert_eq!(cache.get("a").as_deref(), Some("{ a }"));
        cache.put("c", "{ c }");
        assert_eq!(cache.len(), 2);
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").as_deref(), Some("{ a }"));
        assert_eq!(cache.get("c").as_deref(), Some("{ c }"));
        // Storing again refreshes without growing.
        cache.put("a", "{ a }");
        cache.put("d", "{ d }");
        assert!(cache.get("c").is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn hashes_are_lower_case_sha256_hex() {
        assert_eq!(
            hash("{ __typename }"),
            "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b"
        );
    }

    #[test]
    fn only_version_1_with_a_hex_hash_is_accepted() {
        let ok = Value::from_json(serde_json::json!({"version": 1, "sha256Hash": "A".repeat(64)})).unwrap();
        assert_eq!(requested_hash(&ok).unwrap(), "a".repeat(64));
        for bad in [
            serde_json::json!({"version": 2, "sha256Hash": "a".repeat(64)}),
            serde_json::json!({"version": 1, "sha256Hash": "xyz"}),
            serde_json::json!({"version": 1}),
            serde_json::json!("hash"),
        ] {
            assert!(requested_hash(&Value::from_json(bad).unwrap()).is_err());
        }
    }
}
