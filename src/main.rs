//! The `podforge` command line: serve, migrate, schema.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podforge::app::{self, App};
use podforge::config::Config;
use podforge::{db, graphql, telemetry};

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
        Command::Serve { bind } => {
            if let Some(bind) = bind {
                config.bind = bind;
            }
            let app = App::new(config, true).await?;
            let (listener, addr) = app::bind(app.config.bind).await?;
            tracing::info!(%addr, "serving GraphQL at http://{addr}/graphql");
            app::serve(listener, app::router(app), app::shutdown_signal()).await
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
