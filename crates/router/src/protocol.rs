//! The node protocol's messages in the core's words: what a node reports ([`Report`]) and
//! what the router tells it ([`Command`]). The rules (fencing by epoch, leases, what is
//! acknowledged when) live in `nodes.rs` and `leases.rs`; the API's `NodeMessage` and
//! `RouterMessage` are converted to and from these at the gRPC edge.

use crate::model::{Material, PrinterSpec, PrinterState, Rotation};
use crate::ports::DesignFormat;

/// The first message of a node's stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hello {
    pub printers: Vec<PrinterSpec>,
    /// Jobs the node believes it holds: (job name as the router sent it, epoch).
    pub held: Vec<(String, u64)>,
}

/// A node's report on its stream after the hello.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Heartbeat,
    PrinterStatus {
        printer_id: String,
        state: PrinterState,
    },
    /// The node accepted or declined an assignment.
    Ack {
        job: String,
        epoch: u64,
        accepted: bool,
        reason: String,
    },
    Progress(Progress),
    Result(JobResult),
}

/// Where the node is with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Downloading, slicing, heating: before the first layer.
    Preparing,
    Printing,
    /// The printer is paused (by the router or at the printer).
    Paused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The job's name as the router sent it ("jobs/{id}").
    pub job: String,
    pub epoch: u64,
    pub fraction: f64,
    pub layer: u32,
    pub layers_total: u32,
    pub remaining_s: f64,
    pub phase: Phase,
    /// The node's word for the phase ("slicing", "heating"), for the history.
    pub phase_word: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub job: String,
    pub epoch: u64,
    pub success: bool,
    pub reason: String,
    /// The failure is the printer's (or the node's): the job may go elsewhere.
    pub printer_fault: bool,
}

/// What a node is to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Bare job id.
    pub job: String,
    pub epoch: u64,
    pub printer_id: String,
    /// Bare design id.
    pub design: String,
    pub format: DesignFormat,
    pub profile: String,
    pub design_sha256: String,
    pub material: Option<Material>,
    pub rotation: Option<Rotation>,
}

/// A message from the router to a node. Job ids are bare ids, except in `Fenced`, which
/// names the job as the node did (it may not be a job name at all).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Welcome {
        node_id: String,
        lease_s: f64,
        heartbeat_interval_s: f64,
    },
    Assign(Assignment),
    Cancel {
        job: String,
        epoch: u64,
        reason: String,
    },
    Pause {
        job: String,
        epoch: u64,
    },
    Resume {
        job: String,
        epoch: u64,
    },
    /// The result of (job, epoch) is stored durably: the node may forget the job.
    ResultAck {
        job: String,
        epoch: u64,
    },
    /// A report the router refused: the assignment is no longer the node's; stop it.
    Fenced {
        job_name: String,
        epoch: u64,
        reason: String,
    },
}

/// Why the router ends a node's stream; the node reconnects with backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup(pub String);

/// The sending half of a node's stream.
pub type NodeTx = tokio::sync::mpsc::UnboundedSender<Result<Command, Hangup>>;
