//! The router's errors, as domain answers. The gRPC edge maps each variant to a status in one
//! place (`fabrouter_server::errors`); nothing in the core decides on a transport code.

use crate::access::Denial;
use crate::lifecycle::IllegalTransition;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` names the part to fix.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// Refused by the access rules.
    #[error("{0}")]
    Denied(Denial),
    /// The request is valid, but the state of things does not allow it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A job change the state machine does not allow.
    #[error("{0}")]
    Illegal(#[from] IllegalTransition),
    /// The router cannot answer now (shutting down); a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] fabrouter_store::StoreError),
    /// A write could not be made durable.
    #[error(
        "storage failure: the change could not be made durable ({0}); retry (a submit with the same idempotency key)"
    )]
    NotDurable(String),
    /// Something stored cannot be read back.
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub fn precondition(reason: impl Into<String>) -> Error {
        Error::FailedPrecondition(reason.into())
    }
}

impl From<Denial> for Error {
    fn from(d: Denial) -> Error {
        Error::Denied(d)
    }
}
