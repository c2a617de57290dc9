//! Who may do what: the one place that states, for every RPC and every resource, which callers
//! are let through. The services ask here and nowhere else; the gRPC edge turns a [`Denial`]
//! into a status. The RPCs are named here as operations of the API; nothing here speaks gRPC.
//!
//! Every call is decided in three steps, each with its own answer:
//!
//! 1. **Who is it?** No credential, a malformed, unknown or revoked one: `Unauthenticated`
//!    (decided in `auth`, which builds the [`Principal`]).
//! 2. **May this role call this RPC at all?** [`Rpc::roles`]. If not: `PermissionDenied`,
//!    decided before any argument or resource is looked at, so it says nothing about what
//!    exists.
//! 3. **May this caller touch this resource?** [`design`] and [`job`]. A resource the caller
//!    may not see answers `NotFound`, word for word as a missing one, so nobody can probe
//!    another customer's ids. A role that can never do this to any resource of the kind gets
//!    `PermissionDenied` (step 2 already stops those for every RPC that exists today).
//!
//! The rules ("own": created by the caller's principal):
//!
//! | role        | designs                                   | jobs                              | printers, profiles | tokens, node ids | NodeSession |
//! |-------------|-------------------------------------------|-----------------------------------|--------------------|------------------|-------------|
//! | designer    | upload (an upload session is its starter's alone); list, read, repair, delete, download own | quote, submit on own designs; list, read, watch, cancel, pause, resume own | read | - | - |
//! | marketplace | as a designer: its own uploads only       | as a designer: its own jobs only  | read               | -                | -           |
//! | admin       | upload; list own; read, repair, delete, download any | quote, submit on any design; list own; read, watch, cancel, pause, resume any | read | manage | - |
//! | operator    | -                                         | -                                 | read (the fleet)   | -                | -           |
//! | node        | download, for a job assigned to it now    | - (reports on its stream)         | -                  | -                | its own     |
//!
//! Everyone authenticated may ask `WhoAmI`. A design or job belongs to the principal that
//! created it; an admin's repair of someone's design makes the copy the owner's. A node's
//! messages on its stream (progress, results) are checked per job and epoch by the network's
//! fencing, not here: that is the protocol, not a per-call permission.

use std::fmt;

/// A caller's role. Mirrors the API's `Role`; `auth` converts at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Designer,
    Operator,
    Marketplace,
    Admin,
    Node,
    /// A stored token whose role this router does not know: it may only ask who it is.
    Unknown,
}

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Designer => "designer",
            Role::Operator => "operator",
            Role::Marketplace => "marketplace",
            Role::Admin => "admin",
            Role::Node => "node",
            Role::Unknown => "unknown",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Designs and jobs belong to this id.
    pub id: String,
    pub role: Role,
    /// The token id, or for a node its node id.
    pub credential: String,
}

/// Why a call is refused, in words the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No usable credential.
    Unauthenticated(String),
    /// The caller's role may never do this.
    PermissionDenied(String),
    /// No such resource, or one the caller may not see (the two answer alike).
    NotFound(String),
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Unauthenticated(s) | Denial::PermissionDenied(s) | Denial::NotFound(s) => {
                f.write_str(s)
            }
        }
    }
}

/// Every RPC the router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    UploadDesign,
    GetDesign,
    ListDesigns,
    DeleteDesign,
    GetMeshReport,
    RepairDesign,
    DownloadDesign,
    BeginUpload,
    AppendUpload,
    GetUpload,
    CommitUpload,
    EstimateDesign,
    ListProfiles,
    QuoteJob,
    SubmitJob,
    GetJob,
    ListJobs,
    CancelJob,
    PauseJob,
    ResumeJob,
    WatchJob,
    ListPrinters,
    GetPrinter,
    NodeSession,
    CreateToken,
    ListTokens,
    RevokeToken,
    CreateNode,
    WhoAmI,
}

use Role::{Admin, Designer, Marketplace, Node, Operator};

/// Roles that own designs and jobs (admins act for any of them).
const CUSTOMERS: &[Role] = &[Designer, Marketplace, Admin];
/// Customers and the nodes that print for them.
const CUSTOMERS_AND_NODES: &[Role] = &[Designer, Marketplace, Admin, Node];
/// Every person or service behind an API token; node credentials are for the node protocol.
const TOKEN_HOLDERS: &[Role] = &[Designer, Operator, Marketplace, Admin];
const ADMINS: &[Role] = &[Admin];
const NODES: &[Role] = &[Node];
/// Every authenticated caller, whatever its role.
const ANYONE: &[Role] = &[Designer, Operator, Marketplace, Admin, Node, Role::Unknown];

impl Rpc {
    pub const ALL: [Rpc; 29] = [
        Rpc::UploadDesign,
        Rpc::GetDesign,
        Rpc::ListDesigns,
        Rpc::DeleteDesign,
        Rpc::GetMeshReport,
        Rpc::RepairDesign,
        Rpc::DownloadDesign,
        Rpc::BeginUpload,
        Rpc::AppendUpload,
        Rpc::GetUpload,
        Rpc::CommitUpload,
        Rpc::EstimateDesign,
        Rpc::ListProfiles,
        Rpc::QuoteJob,
        Rpc::SubmitJob,
        Rpc::GetJob,
        Rpc::ListJobs,
        Rpc::CancelJob,
        Rpc::PauseJob,
        Rpc::ResumeJob,
        Rpc::WatchJob,
        Rpc::ListPrinters,
        Rpc::GetPrinter,
        Rpc::NodeSession,
        Rpc::CreateToken,
        Rpc::ListTokens,
        Rpc::RevokeToken,
        Rpc::CreateNode,
        Rpc::WhoAmI,
    ];

    /// The service and method, as in the gRPC path `/fabrouter.v1.{service}/{method}`.
    pub fn service_method(self) -> (&'static str, &'static str) {
        let service = match self {
            Rpc::UploadDesign
            | Rpc::GetDesign
            | Rpc::ListDesigns
            | Rpc::DeleteDesign
            | Rpc::GetMeshReport
            | Rpc::RepairDesign
            | Rpc::DownloadDesign
            | Rpc::BeginUpload
            | Rpc::AppendUpload
            | Rpc::GetUpload
            | Rpc::CommitUpload => "DesignService",
            Rpc::EstimateDesign | Rpc::ListProfiles => "EstimateService",
            Rpc::QuoteJob
            | Rpc::SubmitJob
            | Rpc::GetJob
            | Rpc::ListJobs
            | Rpc::CancelJob
            | Rpc::PauseJob
            | Rpc::ResumeJob
            | Rpc::WatchJob => "JobService",
            Rpc::ListPrinters | Rpc::GetPrinter | Rpc::NodeSession => "NodeService",
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::CreateNode
            | Rpc::WhoAmI => "AdminService",
        };
        (service, self.method())
    }

    /// The method name (also the metrics label).
    pub fn method(self) -> &'static str {
        match self {
            Rpc::UploadDesign => "UploadDesign",
            Rpc::GetDesign => "GetDesign",
            Rpc::ListDesigns => "ListDesigns",
            Rpc::DeleteDesign => "DeleteDesign",
            Rpc::GetMeshReport => "GetMeshReport",
            Rpc::RepairDesign => "RepairDesign",
            Rpc::DownloadDesign => "DownloadDesign",
            Rpc::BeginUpload => "BeginUpload",
            Rpc::AppendUpload => "AppendUpload",
            Rpc::GetUpload => "GetUpload",
            Rpc::CommitUpload => "CommitUpload",
            Rpc::EstimateDesign => "EstimateDesign",
            Rpc::ListProfiles => "ListProfiles",
            Rpc::QuoteJob => "QuoteJob",
            Rpc::SubmitJob => "SubmitJob",
            Rpc::GetJob => "GetJob",
            Rpc::ListJobs => "ListJobs",
            Rpc::CancelJob => "CancelJob",
            Rpc::PauseJob => "PauseJob",
            Rpc::ResumeJob => "ResumeJob",
            Rpc::WatchJob => "WatchJob",
            Rpc::ListPrinters => "ListPrinters",
            Rpc::GetPrinter => "GetPrinter",
            Rpc::NodeSession => "NodeSession",
            Rpc::CreateToken => "CreateToken",
            Rpc::ListTokens => "ListTokens",
            Rpc::RevokeToken => "RevokeToken",
            Rpc::CreateNode => "CreateNode",
            Rpc::WhoAmI => "WhoAmI",
        }
    }

    /// The roles that may call this RPC at all (step 2).
    pub fn roles(self) -> &'static [Role] {
        match self {
            // Designs are the customers'; a node only fetches the bytes of its jobs.
            Rpc::UploadDesign
            | Rpc::GetDesign
            | Rpc::ListDesigns
            | Rpc::DeleteDesign
            | Rpc::GetMeshReport
            | Rpc::RepairDesign
            | Rpc::BeginUpload
            | Rpc::AppendUpload
            | Rpc::GetUpload
            | Rpc::CommitUpload
            | Rpc::EstimateDesign => CUSTOMERS,
            Rpc::DownloadDesign => CUSTOMERS_AND_NODES,
            Rpc::QuoteJob
            | Rpc::SubmitJob
            | Rpc::GetJob
            | Rpc::ListJobs
            | Rpc::CancelJob
            | Rpc::PauseJob
            | Rpc::ResumeJob
            | Rpc::WatchJob => CUSTOMERS,
            // The fleet is public to the router's users (designers pick printers from it).
            Rpc::ListPrinters | Rpc::GetPrinter | Rpc::ListProfiles => TOKEN_HOLDERS,
            Rpc::NodeSession => NODES,
            Rpc::CreateToken | Rpc::ListTokens | Rpc::RevokeToken | Rpc::CreateNode => ADMINS,
            Rpc::WhoAmI => ANYONE,
        }
    }

    /// What a call of this RPC is, for refusals.
    fn doing(self) -> &'static str {
        match self {
            Rpc::UploadDesign => "uploading a design",
            Rpc::GetDesign => "reading a design",
            Rpc::ListDesigns => "listing designs",
            Rpc::DeleteDesign => "deleting a design",
            Rpc::GetMeshReport => "reading a mesh report",
            Rpc::RepairDesign => "repairing a design",
            Rpc::DownloadDesign => "downloading a design",
            Rpc::BeginUpload => "starting an upload",
            Rpc::AppendUpload => "appending to an upload",
            Rpc::GetUpload => "reading an upload",
            Rpc::CommitUpload => "committing an upload",
            Rpc::EstimateDesign => "estimating a design",
            Rpc::ListProfiles => "listing profiles",
            Rpc::QuoteJob => "quoting a job",
            Rpc::SubmitJob => "submitting a job",
            Rpc::GetJob => "reading a job",
            Rpc::ListJobs => "listing jobs",
            Rpc::CancelJob => "cancelling a job",
            Rpc::PauseJob => "pausing a job",
            Rpc::ResumeJob => "resuming a job",
            Rpc::WatchJob => "watching a job",
            Rpc::ListPrinters => "listing printers",
            Rpc::GetPrinter => "reading a printer",
            Rpc::NodeSession => "a node session",
            Rpc::CreateToken => "creating a token",
            Rpc::ListTokens => "listing tokens",
            Rpc::RevokeToken => "revoking a token",
            Rpc::CreateNode => "creating a node identity",
            Rpc::WhoAmI => "asking who you are",
        }
    }
}

/// Step 2: may `who` call `rpc` at all?
pub fn call(who: &Principal, rpc: Rpc) -> Result<(), Denial> {
    let roles = rpc.roles();
    if roles.contains(&who.role) {
        return Ok(());
    }
    let needs = if roles == NODES {
        "node credentials (`Bearer node:{id}:{secret}`)".to_string()
    } else {
        let words: Vec<_> = roles.iter().map(|r| r.word()).collect();
        format!("a {} token", words.join(" or "))
    };
    Err(Denial::PermissionDenied(format!(
        "{} needs {needs}; this credential's role is {}",
        rpc.doing(),
        who.role.word()
    )))
}

/// What is done to a design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesignUse {
    /// Its record and reports, estimates, or a job made from it (quote, submit).
    Read,
    /// Its bytes.
    Download,
    /// A repaired copy made from it.
    Repair,
    Delete,
}

/// Step 3 for a design: `owner` is `None` when there is no such design. `held_by_caller` is
/// asked only for a node: whether a job for this design is assigned to it right now.
pub fn design(
    who: &Principal,
    use_: DesignUse,
    name: &str,
    owner: Option<&str>,
    held_by_caller: impl FnOnce() -> bool,
) -> Result<(), Denial> {
    let hidden = || Denial::NotFound(format!("{name} not found"));
    let allowed = match who.role {
        Admin => true,
        Designer | Marketplace => owner == Some(who.id.as_str()),
        Node if use_ == DesignUse::Download => owner.is_some() && held_by_caller(),
        Node | Operator | Role::Unknown => {
            return Err(Denial::PermissionDenied(format!(
                "a {} credential may not {} designs",
                who.role.word(),
                match use_ {
                    DesignUse::Read => "read",
                    DesignUse::Download => "download",
                    DesignUse::Repair => "repair",
                    DesignUse::Delete => "delete",
                }
            )));
        }
    };
    match owner {
        Some(_) if allowed => Ok(()),
        _ => Err(hidden()),
    }
}

/// What is done to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobUse {
    /// The job and its events.
    Read,
    Cancel,
    /// Pause and resume.
    Control,
}

/// Step 3 for a job: `owner` is the owning principal's id, `None` when there is no such job.
pub fn job(who: &Principal, use_: JobUse, name: &str, owner: Option<&str>) -> Result<(), Denial> {
    let allowed = match who.role {
        Admin => true,
        Designer | Marketplace => owner == Some(who.id.as_str()),
        Node | Operator | Role::Unknown => {
            return Err(Denial::PermissionDenied(format!(
                "a {} credential may not {} jobs",
                who.role.word(),
                match use_ {
                    JobUse::Read => "read",
                    JobUse::Cancel => "cancel",
                    JobUse::Control => "pause or resume",
                }
            )));
        }
    };
    match owner {
        Some(_) if allowed => Ok(()),
        _ => Err(Denial::NotFound(format!("{name} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, id: &str) -> Principal {
        Principal {
            id: id.into(),
            role,
            credential: String::new(),
        }
    }

    #[test]
    fn every_rpc_is_listed_once_with_a_distinct_path() {
        let mut seen = std::collections::HashSet::new();
        for rpc in Rpc::ALL {
            assert!(seen.insert(rpc.service_method()), "{rpc:?} twice");
        }
    }

    #[test]
    fn only_whoami_is_open_to_an_unknown_role() {
        let u = who(Role::Unknown, "u");
        for rpc in Rpc::ALL {
            assert_eq!(call(&u, rpc).is_ok(), rpc == Rpc::WhoAmI, "{rpc:?}");
        }
    }

    #[test]
    fn a_node_downloads_only_what_it_holds_and_never_writes() {
        let n = who(Node, "node-a");
        assert!(design(&n, DesignUse::Download, "designs/x", Some("alice"), || true).is_ok());
        assert!(matches!(
            design(&n, DesignUse::Download, "designs/x", Some("alice"), || {
                false
            }),
            Err(Denial::NotFound(_))
        ));
        for u in [DesignUse::Read, DesignUse::Repair, DesignUse::Delete] {
            assert!(matches!(
                design(&n, u, "designs/x", Some("alice"), || true),
                Err(Denial::PermissionDenied(_))
            ));
        }
    }

    #[test]
    fn another_customers_resource_answers_like_a_missing_one() {
        let bob = who(Designer, "bob");
        let theirs = design(&bob, DesignUse::Delete, "designs/x", Some("alice"), || {
            false
        });
        let missing = design(&bob, DesignUse::Delete, "designs/x", None, || false);
        assert_eq!(theirs, missing);
        assert_eq!(
            job(&bob, JobUse::Cancel, "jobs/j", Some("alice")),
            job(&bob, JobUse::Cancel, "jobs/j", None)
        );
        // A missing design is missing for an admin too.
        assert!(matches!(
            design(
                &who(Admin, "root"),
                DesignUse::Read,
                "designs/x",
                None,
                || false
            ),
            Err(Denial::NotFound(_))
        ));
    }
}
