//! The core every subcommand may use; it uses no subcommand (`crate::cmd`).

pub mod apt;
pub mod base;
pub mod consumer;
pub mod deps;
pub mod diff;
pub mod git;
pub mod identity;
pub mod iproute2;
pub mod kbuild;
pub mod kmemleak;
pub mod ktap;
pub mod pin;
pub mod plan;
pub mod project;
pub mod series;
pub mod util;
pub mod vm;
pub mod vng;
