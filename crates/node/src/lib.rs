//! The fabrouter node agent: runs at a makerspace, owns its printers' serial ports, and
//! prints what the router assigns.
//!
//! - [`agent`]: `fab-node run` — [`run_agent`] keeps the session to the router (hello,
//!   heartbeats, reconnect with backoff) and hands work to one task per printer.
//! - [`ctx`]: [`ctx::Ctx`], what the agent shares with its printer tasks.
//! - [`printer`]: a printer's task — its driver's link, queue, download, slice, print, report.
//! - [`driver`]: the printer-driver seam ([`driver::Driver`]) and its drivers: `serial`
//!   (the firmware bridge) and `octoprint` (OctoPrint's REST API).
//! - [`secret`]: [`secret::Secret`], a host credential that never shows in logs or errors.
//! - [`options`]: [`options::slicer_options`], the PrusaSlicer options of one job on one
//!   printer (bed, height, flavour, temperatures, rotation), a pure function.
//! - [`presets`]: a printer's PrusaSlicer presets (vendor names or its own `.ini`),
//!   resolved into the config it slices with and reports to the router.
//! - [`config`]: the TOML file ([`NodeConfig::from_toml_file`]), validated once with line
//!   numbers in every error.
//! - [`held`]: the jobs held, on disk, so restarts on either side lose nothing.
//! - [`slicer`]: PrusaSlicer's CLI with a timeout and a verified cache per (design, config,
//!   options), each key sliced once however many printers ask at once.
//! - [`download`]: fetching a design from the router, streamed and hash-checked.
//! - [`session`]: one `NodeSession` stream.
//! - [`stream`]: `fab-node stream`, one file to one printer with a progress bar or JSON events.
//!
//! Modules depend on each other in one direction only (no two import each other), each on
//! those before it: `presets`, `secret`, `held`, `session`, `slicer`, `stream` (none of the
//! crate's); `config` (presets, secret); `driver` (config, secret); `download` (session);
//! `options` (config; its tests slicer); `ctx` (held, slicer); `printer` (config, ctx,
//! download, driver, held, options); `agent` (config, ctx, held, printer, session, slicer).

pub mod agent;
pub mod config;
pub mod ctx;
pub mod download;
pub mod driver;
pub mod held;
pub mod options;
pub mod presets;
pub mod printer;
pub mod secret;
pub mod session;
pub mod slicer;
pub mod stream;

pub use agent::run_agent;
pub use config::{ConfigError, NodeConfig};
