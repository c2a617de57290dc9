//! The fabrouter API contract, generated from `proto/fabrouter/v1`. The proto files are the only
//! contract between the router, node agents and clients; nothing here is written by hand except
//! the small helpers at the bottom that every side needs to agree on.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("fabrouter.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fabrouter_descriptor.bin"));

/// Resource-name helpers: `designs/{id}`, `jobs/{id}`.
pub mod names {
    /// Builds `designs/{id}`.
    pub fn design(id: &str) -> String {
        format!("designs/{id}")
    }

    /// Builds `jobs/{id}`.
    pub fn job(id: &str) -> String {
        format!("jobs/{id}")
    }

    /// Builds `nodes/{node}/printers/{printer}`.
    pub fn printer(node: &str, printer: &str) -> String {
        format!("nodes/{node}/printers/{printer}")
    }

    /// Returns the id of a `{collection}/{id}` name, or `None` if the name has another shape.
    pub fn parse<'a>(name: &'a str, collection: &str) -> Option<&'a str> {
        let id = name.strip_prefix(collection)?.strip_prefix('/')?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_round_trip_and_reject_other_shapes() {
        assert_eq!(names::parse(&names::design("abc"), "designs"), Some("abc"));
        assert_eq!(names::parse("jobs/abc", "designs"), None);
        assert_eq!(names::parse("designs/", "designs"), None);
        assert_eq!(names::parse("designs/a/b", "designs"), None);
        assert_eq!(names::parse("designsabc", "designs"), None);
    }
}
