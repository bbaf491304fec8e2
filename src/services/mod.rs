//! Use-cases. Each function authenticates nothing (callers pass the
//! [`crate::auth::Viewer`]), validates its input, does its work in short
//! transactions and returns [`crate::error::ApiError`]. Resolvers, the CLI and
//! tests call these; none of them knows GraphQL.

pub mod accounts;
pub mod generation;
pub mod library;
pub mod throttle;
