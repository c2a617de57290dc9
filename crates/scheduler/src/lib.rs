//! Routes a print job to the nearest capable printer, Kubernetes-scheduler style: filter
//! plugins decide whether a printer can take the job at all (and keep a reason code when it
//! cannot), score plugins rank the capable ones, and every decision keeps its reasons so they
//! can be shown to the customer.
//!
//! Pure and synchronous: the router owns the printer registry and the job store and calls
//! [`Scheduler::quote`] (top options, commits nothing) or [`Scheduler::assign`] (one placement
//! per copy) with its [`Fleet`] (the scheduler's compact copy of the printer registry, kept up
//! to date by the router) and an [`Estimator`] for the uploaded design.
//!
//! Components:
//! - [`model`]: printers as nodes declare them, the job request, estimates.
//! - [`fleet`]: the scheduler's snapshot of the registry, compact for the hot path.
//! - [`filter`]: the filter plugins and [`Rejection`]s (state, technology, material, nozzle,
//!   distance, build volume with orientation search, profile estimate).
//! - [`orientation`]: which way up and how turned a part must be placed to fit.
//! - [`score`]: the score plugins (distance, queue ETA, price, load) and [`Weights`].
//! - [`route`]: the pipeline, [`Decision`] and [`Assignment`].
//! - [`geo`]: points, great-circle distance, and the ~1 km [`CoarseLocation`] that is the only
//!   form in which a customer location may be stored.
//!
//! Invariant: no I/O, no clocks, no randomness: the same request and printers give the same
//! decision (ties are broken by a hash of the job key and printer id).
//!
//! ```
//! use fabrouter_scheduler::*;
//!
//! let printer = Printer {
//!     id: "prusa-1".into(),
//!     node_id: "node-a".into(),
//!     makerspace: "Fablab Zurich".into(),
//!     technology: Technology::Fdm,
//!     build_volume_mm: [250.0, 210.0, 210.0],
//!     nozzle_diameters_mm: vec![0.4],
//!     materials: vec![Material { kind: "PLA".into(), colour: "black".into() }],
//!     profiles: vec!["pla-0.2".into()],
//!     location: GeoPoint::new(47.389, 8.515)?,
//!     price: PriceModel { per_hour: 2.0, per_gram: 0.05, setup_fee: 3.0, currency: "CHF".into() },
//!     state: PrinterState::Idle,
//!     queued_work_s: 0.0,
//!     active_jobs: 0,
//! };
//! let fleet = Fleet::new([printer])?;
//! let request = JobRequest {
//!     job_key: "design-sha256".into(),
//!     part_extent_mm: [80.0, 40.0, 25.0],
//!     technology: Technology::Fdm,
//!     pre_sliced: false,
//!     material: Some(MaterialRequest { kind: "pla".into(), colour: None }),
//!     nozzle_mm: None,
//!     customer: GeoPoint::new(47.377, 8.540)?,
//!     max_distance_km: Some(25.0),
//!     quantity: 1,
//!     fallback_estimate: None,
//! };
//! // Estimates for the uploaded design, per slicer profile.
//! let estimate = |profile: &str| {
//!     (profile == "pla-0.2").then_some(EstimateFigures { print_time_s: 5400.0, filament_g: 22.0 })
//! };
//! let decision = Scheduler::default().quote(&request, &fleet, &estimate, 3)?;
//! let best = &decision.options[0];
//! assert_eq!(best.printer_id, "prusa-1");
//! assert!((best.unit_price - (3.0 + 1.5 * 2.0 + 22.0 * 0.05)).abs() < 1e-9);
//! // Store only the coarse customer location with the job.
//! assert_eq!(coarse_location(request.customer)?.as_str().len(), 6);
//! # Ok::<(), SchedulerError>(())
//! ```

pub mod error;
mod explain;
pub mod filter;
pub mod fleet;
pub mod geo;
pub mod model;
pub mod orientation;
pub mod route;
pub mod score;

pub use error::{GeoError, SchedulerError};
pub use explain::duration;
pub use filter::{Filter, JobContext, PrinterRef, ProfileEstimate, RejectCode, Rejection};
pub use fleet::Fleet;
pub use geo::{CoarseLocation, GeoPoint, coarse_location};
pub use model::{
    EstimateFigures, Estimator, JobRequest, MAX_QUANTITY, Material, MaterialRequest, PriceModel,
    Printer, PrinterState, Technology,
};
pub use orientation::{Orientation, UpAxis};
pub use route::{
    Assignment, Decision, Placement, RankedLower, RejectedPrinter, RouteOption, Scheduler,
};
pub use score::{ScoreBreakdown, Weights};
