//! Logging: `tracing` with `RUST_LOG` filtering, compact lines in development,
//! JSON in production. Field names are dotted and shared across the code
//! (`podcast.id`, `user.id`, `job.id`, `duration_ms`); secrets, prompts and
//! model output are never logged, only their sizes.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Later calls are ignored (tests).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Compact => builder.compact().try_init(),
    };
}
