//! Waterworks: supervisory control and business server for rural and county water utilities.
//!
//! This package is the composition root (the binary `waterworks` and this small library, which the
//! integration tests drive in-process): it reads configuration, opens the store, starts the simulator when
//! asked, builds the supervision tree, serves HTTP and handles signals.
//!
//! # Layout
//! - [`config`]: raw TOML → validated [`config::Config`] (every problem named with file and key);
//! - [`app`]: start-up order and shutdown of a running server;
//! - [`simulation`]: the configuration as the simulators (crate `waterworks-sim`) see it, and the ids under
//!   which the fault-injection API lists them.
//!
//! **Invariant:** only this package knows the config file format, signals and systemd; the crates below
//! take resolved values.

pub mod app;
pub mod config;
pub mod incidents;
pub mod simulation;
