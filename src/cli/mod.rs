//! Command-line use-cases beyond serving: generating an episode locally and
//! fetching the embedded model.

pub mod generate;
