//! gRPC statuses with structured details (google.rpc.BadRequest, QuotaFailure, ErrorInfo), so a
//! client can show the reason and a program can act on the field or limit that was hit. Errors
//! become statuses here, at the service edge, and nowhere else.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use fabrouter_router::Error;

use crate::access::Denial;
use crate::estimates::EstimateError;

const DOMAIN: &str = "fabrouter";

/// An access refusal (see `access`) as its status.
pub fn denied(d: Denial) -> Status {
    match d {
        Denial::Unauthenticated(reason) => Status::unauthenticated(reason),
        Denial::PermissionDenied(reason) => Status::permission_denied(reason),
        Denial::NotFound(reason) => Status::not_found(reason),
    }
}

/// INVALID_ARGUMENT naming the offending field.
pub fn bad_request(field: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    let mut d = ErrorDetails::with_bad_request_violation(field, reason.clone());
    d.set_error_info(
        "INVALID_INPUT",
        DOMAIN,
        [("field".to_string(), field.to_string())],
    );
    Status::with_error_details(Code::InvalidArgument, reason, d)
}

/// RESOURCE_EXHAUSTED naming the limit.
pub fn limit_exceeded(subject: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    let mut d = ErrorDetails::with_quota_failure_violation(subject, reason.clone());
    d.set_error_info(
        "LIMIT_EXCEEDED",
        DOMAIN,
        [("subject".to_string(), subject.to_string())],
    );
    Status::with_error_details(Code::ResourceExhausted, reason, d)
}

/// Storage failures are the server's problem, never the caller's, except a missing record;
/// those the store calls transient (backend unreachable, a concurrent change won) tell the
/// client to retry, whichever backend it is.
pub fn store_status(e: fabrouter_store::StoreError) -> Status {
    match e {
        fabrouter_store::StoreError::NotFound(what) => {
            Status::not_found(format!("{what} not found"))
        }
        fabrouter_store::StoreError::AlreadyExists(what) => {
            Status::already_exists(format!("{what} already exists"))
        }
        transient if transient.is_transient() => {
            tracing::warn!(error = %transient, "storage temporarily failing");
            Status::unavailable(format!("storage temporarily failing: {transient}; retry"))
        }
        other => {
            tracing::error!(error = %other, "storage failure");
            Status::internal(format!("storage failure: {other}"))
        }
    }
}

/// The router core's answer as its status: the one mapping from domain errors to codes.
pub fn status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { field, reason } => bad_request(field, reason),
        Error::Denied(d) => denied(d),
        Error::FailedPrecondition(reason) => Status::failed_precondition(reason),
        Error::Illegal(t) => Status::failed_precondition(t.to_string()),
        Error::Unavailable(reason) => Status::unavailable(reason),
        Error::Store(e) => store_status(e),
        e @ Error::NotDurable(_) => Status::internal(e.to_string()),
        Error::Corrupt(reason) => {
            tracing::error!(%reason, "unreadable record");
            Status::internal(reason)
        }
    }
}

/// Why there is no estimate, as its status: the model's reasons are preconditions.
pub fn estimate_status(e: EstimateError) -> Status {
    match e {
        EstimateError::Store(e) => store_status(e),
        e @ EstimateError::Io(_) => Status::internal(e.to_string()),
        e => Status::failed_precondition(e.to_string()),
    }
}

/// FAILED_PRECONDITION: the call is well formed but does not fit the resource's state now.
pub fn precondition(reason: impl Into<String>) -> Status {
    Status::failed_precondition(reason.into())
}
