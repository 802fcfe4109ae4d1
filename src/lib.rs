//! Waterworks: supervisory control and business server for rural and county water utilities.
//!
//! This package is the composition root (the binary `waterworks` and this small library, which the
//! integration tests drive in-process): it reads configuration, opens the store, starts the simulator when
//! asked, builds the supervision tree, serves HTTP and handles signals.
//!
//! # Layout
//! - [`config`]: raw TOML → validated [`config::Config`] (every problem named with file and key);
//! - [`app`]: start-up order and shutdown of a running server;
//! - [`sim`]: the configuration as the simulator sees it;
//! - [`sim_control`]: the fault-injection HTTP API over every simulator the process runs.
//!
//! **Invariant:** only this package knows the config file format, signals and systemd; the crates below
//! take resolved values.

pub mod app;
pub mod config;
pub mod sim;
pub mod sim_control;
