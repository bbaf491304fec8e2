//! Integration tests: one binary (each test binary links the whole crate).
//! Every test gets its own database from a migrated template and talks to the
//! real router over real HTTP (see `podforge::testing`).

mod accounts;
mod guards;
mod http;
mod library;
mod schema;
mod tls;
