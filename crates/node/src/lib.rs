//! The fabrouter node agent: runs at a makerspace, owns its printers' serial ports, and
//! prints what the router assigns.
//!
//! - [`agent`]: `fab-node run` — [`run_agent`] keeps the session to the router (hello,
//!   heartbeats, reconnect with backoff) and hands work to one task per printer.
//! - [`printer`]: a printer's task — serial link, queue, download, slice, stream, report.
//! - [`config`]: the TOML file ([`NodeConfig::from_toml_file`]), validated once with line
//!   numbers in every error.
//! - [`held`]: the jobs held, on disk, so restarts on either side lose nothing.
//! - [`slicer`]: PrusaSlicer's CLI with a timeout and a verified cache per (design, config,
//!   options), each key sliced once however many printers ask at once.
//! - [`download`]: fetching a design from the router, streamed and hash-checked.
//! - [`session`]: one `NodeSession` stream.
//! - [`stream`]: `fab-node stream`, one file to one printer with a progress bar or JSON events.

pub mod agent;
pub mod config;
pub mod download;
pub mod held;
pub mod printer;
pub mod session;
pub mod slicer;
pub mod stream;

pub use agent::run_agent;
pub use config::{ConfigError, NodeConfig};
