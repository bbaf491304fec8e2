#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

//! Integration tests: one binary (each test binary links the whole crate).
//! Every test gets its own database from a migrated template and talks to the
//! real router over real HTTP (see `podforge::testing`).

mod accounts;
mod audio;
mod clients;
mod deploy;
mod errors;
mod guards;
mod http;
mod jobs;
mod layout;
mod library;
mod local;
mod pipeline;
mod pooler;
mod process;
mod query_cost;
mod schema;
mod speech;
mod streaming;
mod tls;
mod ws;
mod wsclient;
