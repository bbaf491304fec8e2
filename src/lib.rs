//! Podforge: turns a topic and sources into a podcast episode, driven through
//! one GraphQL API backed by PostgreSQL.
//!
//! Module map (arrows point one way: graphql -> services -> db):
//! - [`config`]: environment -> typed configuration.
//! - [`app`]: the shared state of a process.
//! - [`server`]: the HTTP router, its handlers, bind and serve.
//! - [`wiring`]: providers and pipeline from the configuration.
//! - [`backoff`]: the one retry schedule.
//! - [`cli`]: `generate` and `model fetch`.
//! - [`db`]: connections, migrations, tables and queries (diesel only).
//! - [`domain`]: ids, statuses and formats shared by every layer.
//! - [`auth`]: passwords, tokens, the viewer of a request.
//! - [`services`]: use-cases called by resolvers, the CLI and tests.
//! - [`graphql`]: schema, resolvers, error codes, the websocket protocols.
//! - [`jobs`]: a generic durable job queue and its workers.
//! - [`listen`]: the process's LISTEN connection.
//! - [`media`]: mixing speech clips, loudness, MP3 encoding and ID3 chapters.
//! - [`progress`]: generation events and their fan-out.
//! - [`pipeline`]: the generation stages and the runner that checkpoints them.
//! - [`providers`]: language model, research and speech clients.
//! - [`sources`]: fetching user sources, reducing them to text, chunking and ranking passages.
//! - [`telemetry`]: logging set-up.
//! - `testing` (feature `test-support`): test databases, a served app and
//!   mock provider servers for tests and benchmarks.

pub mod app;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod jobs;
pub mod listen;
pub mod media;
pub mod pipeline;
pub mod progress;
pub mod providers;
pub mod server;
pub mod services;
pub mod sources;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod wiring;
