//! Media objects (speech clips, finished MP3s) behind one facade over the
//! `object_store` crate: a local directory by default, any S3-compatible
//! store (AWS S3, Tigris on Fly, Supabase Storage, R2, MinIO) by
//! configuration, so several instances share what one of them rendered.
//!
//! Callers never build raw paths: [`clip_key`] and [`episode_key`] make them,
//! and every object of a podcast lives under `podcasts/<id>/`, so
//! [`MediaStore::delete_podcast`] removes all of it. (Modelled on crates.io's
//! `Storage`: typed methods per object kind over one `ObjectStore`.)

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::config::MediaConfig;
use crate::domain::PodcastId;

/// Where media objects live, shared as `Arc` by the pipeline and the server.
#[derive(Debug, Clone)]
pub struct MediaStore {
    inner: Arc<dyn ObjectStore>,
    describe: String,
}

/// An object's size and version, as the store reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub bytes: u64,
    /// The store's entity tag, when it has one.
    pub e_tag: Option<String>,
}

/// The key of a speech clip: the podcast it belongs to and a SHA-256 over
/// everything that determines its sound (provider, model, voice, speed and
/// the text read), so a changed input gets a new key and an unchanged one
/// is found again by a resumed, retried or re-voiced generation.
pub fn clip_key(podcast: PodcastId, provider: &str, model: &str, voice: &str, speed: f32, text: &str) -> String {
    let mut hash = Sha256::new();
    for part in [provider, model, voice, &format!("{speed:.3}"), text] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("podcasts/{podcast}/clips/{hex}.wav")
}

/// The key of a finished episode file: one per content (its SHA-256), so a
/// re-rendered episode gets a new URL and caches never serve the old audio.
pub fn episode_key(podcast: PodcastId, sha256_hex: &str) -> String {
    format!(
        "podcasts/{podcast}/episode-{}.mp3",
        &sha256_hex[..sha256_hex.len().min(16)]
    )
}

/// True for keys this store hands out (a request for anything else is refused
/// before the store is asked).
pub fn is_media_key(key: &str) -> bool {
    key.starts_with("podcasts/")
        && !key.contains("..")
        && !key.contains("//")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_'))
}

impl MediaStore {
    /// The store the configuration asks for: S3-compatible when a bucket is
    /// set, else a local directory (created when missing).
    ///
    /// Errors: an unusable directory or S3 settings.
    pub fn from_config(config: &MediaConfig) -> anyhow::Result<Self> {
        if let Some(bucket) = &config.s3_bucket {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &config.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &config.s3_region {
                builder = builder.with_region(region);
            }
            let store = builder.build().context("the S3 media store settings")?;
            return Ok(Self {
                inner: Arc::new(store),
                describe: format!("s3://{bucket}"),
            });
        }
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create the media directory {}", config.dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&config.dir)
            .with_context(|| format!("cannot use the media directory {}", config.dir.display()))?;
        Ok(Self {
            inner: Arc::new(store),
            describe: config.dir.display().to_string(),
        })
    }

    /// An in-memory store (tests).
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(object_store::memory::InMemory::new()),
            describe: "memory".into(),
        }
    }

    /// Where the objects live, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Writes `bytes` at `key` (atomically: readers see all or nothing).
    #[tracing::instrument(skip(self, bytes), fields(bytes = bytes.len()))]
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.inner
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing media object {key}"))?;
        Ok(())
    }

    /// The object at `key`, whole.
    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let got = self
            .inner
            .get(&Path::from(key))
            .await
            .with_context(|| format!("reading media object {key}"))?;
        Ok(got.bytes().await?)
    }

    /// `range` (bytes, end exclusive) of the object at `key`.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> anyhow::Result<Bytes> {
        self.inner
            .get_range(&Path::from(key), range)
            .await
            .with_context(|| format!("reading media object {key}"))
    }

    /// Size and version of the object at `key`; `None` when there is none.
    pub async fn head(&self, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        match self.inner.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                bytes: meta.size,
                e_tag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading media object {key}"))),
        }
    }

    /// Deletes every object of `podcast`; returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn delete_podcast(&self, podcast: PodcastId) -> anyhow::Result<usize> {
        let prefix = Path::from(format!("podcasts/{podcast}"));
        let locations = self.inner.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        let deleted: Vec<Path> = self
            .inner
            .delete_stream(locations)
            .try_collect()
            .await
            .with_context(|| format!("deleting the media of podcast {podcast}"))?;
        Ok(deleted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keys_change_with_every_input() {
        let p = PodcastId::new();
        let base = clip_key(p, "kokoro", "v1", "af_heart", 1.0, "Hello.");
        assert!(is_media_key(&base), "{base}");
        for other in [
            clip_key(p, "openai", "v1", "af_heart", 1.0, "Hello."),
            clip_key(p, "kokoro", "v2", "af_heart", 1.0, "Hello."),
            clip_key(p, "kokoro", "v1", "am_adam", 1.0, "Hello."),
            clip_key(p, "kokoro", "v1", "af_heart", 1.1, "Hello."),
            clip_key(p, "kokoro", "v1", "af_heart", 1.0, "Hello!"),
            clip_key(PodcastId::new(), "kokoro", "v1", "af_heart", 1.0, "Hello."),
            // Field boundaries are part of the hash.
            clip_key(p, "kokorov", "1", "af_heart", 1.0, "Hello."),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base, clip_key(p, "kokoro", "v1", "af_heart", 1.0, "Hello."));
    }

    #[test]
    fn only_media_keys_are_accepted() {
        assert!(is_media_key("podcasts/0190/episode-abc.mp3"));
        for bad in [
            "../etc/passwd",
            "podcasts/../x",
            "podcasts//x",
            "other/x",
            "podcasts/a b",
            "podcasts/%2e%2e",
        ] {
            assert!(!is_media_key(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn put_head_range_and_delete_by_podcast() {
        let store = MediaStore::memory();
        let (a, b) = (PodcastId::new(), PodcastId::new());
        let ka = episode_key(a, "00112233445566778899");
        let kb = episode_key(b, "aabbccddeeff");
        store.put(&ka, b"0123456789".to_vec()).await.unwrap();
        store.put(&kb, b"other".to_vec()).await.unwrap();
        assert_eq!(store.head(&ka).await.unwrap().unwrap().bytes, 10);
        assert_eq!(&store.get_range(&ka, 2..5).await.unwrap()[..], b"234");
        assert_eq!(store.delete_podcast(a).await.unwrap(), 1);
        assert!(store.head(&ka).await.unwrap().is_none());
        assert!(store.head(&kb).await.unwrap().is_some());
    }
}
