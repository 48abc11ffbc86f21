//! End-to-end tests: the real `relocate` binary, the real first-party
//! plugins, real Sentry fixtures, and real SQLite and PostgreSQL databases.
//!
//! PostgreSQL tests need a server (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! or `RELOCATE_TEST_PG`); each test creates and drops a database of its own.

// Every function here is test code (scenarios run by `db_test!` are not
// `#[test]`s themselves): a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod authoring;
mod catalogue;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod crypto;
mod errors;
mod exit_codes;
mod folding;
mod hostile;
mod import;
mod nats;
mod operators;
mod plugin_test;
mod plugins;
mod releases;
mod sandbox;
mod scale;
mod scenarios;
mod status;
mod synth;
