//! The `podforge` command line: serve, worker, migrate, schema.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podforge::app::{self, App};
use podforge::config::Config;
use podforge::{db, graphql, telemetry};
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
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
}

fn main() -> ExitCode {
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
            let app = App::new(config, true).await?;
            let (listener, addr) = app::bind(app.config.bind).await?;
            let shutdown = CancellationToken::new();
            let background = app.start_background(shutdown.clone(), true);
            tracing::info!(%addr, workers = app.config.jobs.workers, "serving GraphQL at http://{addr}/graphql");
            let stop = shutdown.clone();
            let served = app::serve(listener, app::router(app), async move {
                app::shutdown_signal().await;
                stop.cancel();
            })
            .await;
            // Running jobs stop at a safe point and hand back their leases.
            shutdown.cancel();
            let _ = background.await;
            served
        }
        Command::Worker { workers } => {
            if let Some(n) = workers {
                config.jobs.workers = n;
            }
            if config.jobs.workers == 0 {
                anyhow::bail!("a worker needs at least one slot (--workers or PODFORGE_WORKERS)");
            }
            let app = App::new(config, true).await?;
            let shutdown = CancellationToken::new();
            let background = app.start_background(shutdown.clone(), true);
            tracing::info!(workers = app.config.jobs.workers, "running generation jobs");
            app::shutdown_signal().await;
            shutdown.cancel();
            let _ = background.await;
            Ok(())
        }
        Command::Migrate => {
            app::install_crypto_provider();
            let (_, target) = db::connect::build_pool(&config.database)?;
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
        Command::Schema => Ok(()),
    }
}
