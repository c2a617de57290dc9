//! Errors the scheduler returns: malformed input (request, printer declaration, weights, points)
//! and submit-time failures. A printer that merely cannot take a job is not an error: it is a
//! [`crate::Rejection`] kept in the decision.

use thiserror::Error;

use crate::filter::RejectCode;

/// A latitude/longitude or geohash that cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GeoError {
    #[error("latitude {0} is outside [-90, 90] degrees")]
    Latitude(f64),
    #[error("longitude {0} is outside [-180, 180] degrees")]
    Longitude(f64),
    #[error("coarse location must be a {want}-character geohash, got {len} characters")]
    GeohashLength { len: usize, want: usize },
    #[error("geohash: {0}")]
    Geohash(String),
}

/// Why a request, printer declaration or weight set was refused, or a submit failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SchedulerError {
    #[error(
        "part extent {0:?} mm must be three finite sizes above 0 and at most {max} mm",
        max = crate::model::MAX_PART_EXTENT_MM
    )]
    PartExtent([f64; 3]),
    #[error("quantity {quantity} must be between 1 and {max}")]
    Quantity { quantity: u32, max: u32 },
    #[error("nozzle diameter {0} mm must be finite and above 0")]
    Nozzle(f64),
    #[error("maximum distance {0} km must be finite and not negative")]
    MaxDistance(f64),
    #[error("fallback estimate must have finite, non-negative time and mass")]
    FallbackEstimate,
    #[error("weight `{name}` = {value} must be finite and not negative")]
    Weight { name: &'static str, value: f64 },
    #[error("at least one weight must be above 0")]
    AllWeightsZero,
    #[error("printer {printer_id}: {problem}")]
    Printer {
        printer_id: String,
        problem: &'static str,
    },
    #[error("printer {0} is declared twice")]
    DuplicatePrinter(String),
    #[error("printer {0} is not registered")]
    UnknownPrinter(String),
    #[error("chosen printer {printer_id} cannot take this job ({code}): {message}")]
    ChosenPrinterRejected {
        printer_id: String,
        code: RejectCode,
        message: String,
    },
    #[error("no printer can take this job ({rejected} rejected)")]
    NoCapablePrinter { rejected: usize },
    #[error(transparent)]
    Geo(#[from] GeoError),
}
