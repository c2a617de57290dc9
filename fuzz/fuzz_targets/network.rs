//! The router's handling of node messages (`Network::node_message`, plus node (re)connects,
//! disconnects and lease ticks) against a router with three nodes, four printers and jobs in
//! the assigned and printing states.
//!
//! The router state is built once per process through the public API (a real fabd on
//! loopback: upload, submit, a progress report) and copied for each input, so every input
//! starts from the same sled directory; `Network::load` then restores it as fabd does at start.
//!
//! Invariants after every step: no panic; each printer's active-job count is exactly the number
//! of its active jobs in the store; an active job names a registered printer; and at most one
//! node holds a job's current epoch, on the job's own node ("no job in two places").

#![no_main]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbitrary::Arbitrary;
use fabrouter_api::v1 as pb;
use fabrouter_router::protocol::{Command, Hangup};
use fabrouter_router::{Network, NetworkConfig};
use fabrouter_server::State;
use fabrouter_server::catalog::StoreCatalog;
use fabrouter_server::config::Config;
use fabrouter_server::convert::{self, ProstCodec};
use fabrouter_store::{SledStore, Store};
use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc;

mod fixture;

/// Mirror of `pb::node_message::Msg`, with ids drawn from the fixture so that most messages
/// are about real jobs and printers.
#[derive(Arbitrary, Debug)]
enum Msg {
    Hello,
    Heartbeat,
    PrinterStatus {
        printer: u8,
        state: u8,
    },
    Ack {
        job: JobRef,
        accepted: bool,
    },
    Progress {
        job: JobRef,
        fraction: Fraction,
        layer: u8,
    },
    Result {
        job: JobRef,
        success: bool,
        printer_fault: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct JobRef {
    job: u8,
    epoch: EpochRef,
}

#[derive(Arbitrary, Debug)]
enum EpochRef {
    /// The epoch the router holds now (a node that is up to date).
    Current,
    /// The epoch this node was last told (what a real node sends).
    Held,
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Fraction {
    Step(u8),
    Weird(u8),
}

#[derive(Arbitrary, Debug)]
struct Held {
    job: u8,
    epoch: EpochRef,
    printer: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Msg {
        node: u8,
        msg: Msg,
    },
    Reconnect {
        node: u8,
        held: Vec<Held>,
    },
    Disconnect {
        node: u8,
    },
    /// A message from a stream that was replaced (must be ignored).
    Stale {
        node: u8,
        msg: Msg,
    },
    Tick,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Lease and grace of 0 s make every tick expire nodes and lost prints; else they never do.
    short_lease: bool,
    short_grace: bool,
    ops: Vec<Op>,
}

/// What one simulated node believes it holds: job id -> (epoch, printer id).
struct NodeSim {
    id: String,
    printers: Vec<String>,
    session: Option<u64>,
    rx: Option<mpsc::UnboundedReceiver<Result<Command, Hangup>>>,
    held: HashMap<String, (u64, String)>,
}

struct World<'a> {
    net: Arc<Network>,
    fx: &'a fixture::Fixture,
    nodes: Vec<NodeSim>,
}

impl World<'_> {
    fn job_name(&self, k: u8) -> String {
        let jobs = &self.fx.jobs;
        match usize::from(k) {
            i if i < jobs.len() => format!("jobs/{}", jobs[i]),
            i if i == jobs.len() => "jobs/no-such-job".into(),
            i if i == jobs.len() + 1 => String::new(),
            _ => format!("nodes/x/printers/{k}"),
        }
    }

    fn epoch(&self, node: usize, job: &str, e: &EpochRef) -> u64 {
        match e {
            EpochRef::Raw(n) => *n,
            EpochRef::Current => job
                .strip_prefix("jobs/")
                .and_then(|id| self.net.load_job(id).ok().flatten())
                .map_or(0, |j| j.epoch),
            EpochRef::Held => self.nodes[node].held.get(job).map_or(1, |h| h.0),
        }
    }

    fn printer_id(&self, node: usize, k: u8) -> String {
        let p = &self.nodes[node].printers;
        p.get(usize::from(k))
            .cloned()
            .unwrap_or_else(|| "ghost".into())
    }

    fn convert(&self, node: usize, msg: &Msg) -> pb::node_message::Msg {
        use pb::node_message::Msg as M;
        let job = |r: &JobRef| {
            let name = self.job_name(r.job);
            let epoch = self.epoch(node, &name, &r.epoch);
            (name, epoch)
        };
        match msg {
            Msg::Hello => M::Hello(pb::NodeHello::default()),
            Msg::Heartbeat => M::Heartbeat(pb::Heartbeat::default()),
            Msg::PrinterStatus { printer, state } => M::PrinterStatus(pb::PrinterStatus {
                printer_id: self.printer_id(node, *printer),
                state: i32::from(*state % 7),
                ..Default::default()
            }),
            Msg::Ack { job: r, accepted } => {
                let (job, epoch) = job(r);
                M::Ack(pb::AssignmentAck {
                    job,
                    epoch,
                    accepted: *accepted,
                    reason: "fuzz".into(),
                })
            }
            Msg::Progress {
                job: r,
                fraction,
                layer,
            } => {
                let (job, epoch) = job(r);
                let fraction = match fraction {
                    Fraction::Step(s) => f64::from(*s) / 200.0,
                    Fraction::Weird(w) => [
                        f64::NAN,
                        -1.0,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        1e300,
                        -0.0,
                    ][usize::from(*w) % 6],
                };
                M::Progress(pb::JobProgress {
                    job,
                    epoch,
                    fraction,
                    layer: u32::from(*layer),
                    layers_total: 100,
                    phase: "printing".into(),
                    ..Default::default()
                })
            }
            Msg::Result {
                job: r,
                success,
                printer_fault,
            } => {
                let (job, epoch) = job(r);
                M::Result(pb::JobResult {
                    job,
                    epoch,
                    success: *success,
                    printer_fault: *printer_fault,
                    reason: "fuzz".into(),
                })
            }
        }
    }

    fn connect(&mut self, node: usize, held: &[Held]) {
        let held: Vec<pb::HeldJob> = held
            .iter()
            .take(8)
            .map(|h| {
                let job = self.job_name(h.job);
                pb::HeldJob {
                    epoch: self.epoch(node, &job, &h.epoch),
                    printer_id: self.printer_id(node, h.printer),
                    job,
                }
            })
            .collect();
        let hello = pb::NodeHello {
            agent_version: "fuzz".into(),
            printers: self.fx.nodes[node].1.clone(),
            held_jobs: held.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let n = &mut self.nodes[node];
        // A restarted node knows exactly what it says it holds.
        n.held = held
            .into_iter()
            .map(|h| (h.job, (h.epoch, h.printer_id)))
            .collect();
        match self
            .net
            .node_connected(&n.id, &convert::hello_from(hello), tx)
        {
            Ok(session) => {
                n.session = Some(session);
                n.rx = Some(rx);
            }
            Err(e) => panic!("fixture hello refused: {e}"),
        }
    }

    /// Delivers what the router sent to each node and updates the node's beliefs.
    fn deliver(&mut self) {
        for n in &mut self.nodes {
            let Some(rx) = n.rx.as_mut() else { continue };
            while let Ok(m) = rx.try_recv() {
                let Ok(m) = m else {
                    // The router ended the stream (lease expired): the node reconnects later.
                    n.rx = None;
                    n.session = None;
                    break;
                };
                use pb::router_message::Msg as R;
                match convert::command(m).msg {
                    Some(R::Assignment(a)) => {
                        n.held.insert(a.job, (a.epoch, a.printer_id));
                    }
                    Some(R::Cancel(c)) if n.held.get(&c.job).is_some_and(|h| h.0 == c.epoch) => {
                        n.held.remove(&c.job);
                    }
                    Some(R::Fenced(f)) if n.held.get(&f.job).is_some_and(|h| h.0 <= f.epoch) => {
                        n.held.remove(&f.job);
                    }
                    _ => {}
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        let count = self.nodes.len();
        match op {
            Op::Msg { node, msg } | Op::Stale { node, msg } => {
                let node = usize::from(*node) % count;
                let Some(session) = self.nodes[node].session else {
                    return;
                };
                let session = if matches!(op, Op::Stale { .. }) {
                    session.wrapping_sub(1)
                } else {
                    session
                };
                let m = self.convert(node, msg);
                // A node forgets a job it reported finished or declined.
                match &m {
                    pb::node_message::Msg::Result(r) => {
                        self.nodes[node].held.remove(&r.job);
                    }
                    pb::node_message::Msg::Ack(a) if !a.accepted => {
                        self.nodes[node].held.remove(&a.job);
                    }
                    _ => {}
                }
                let id = self.nodes[node].id.clone();
                if let Some(report) = convert::report_from(m) {
                    self.net.node_message(&id, session, report);
                }
            }
            Op::Reconnect { node, held } => self.connect(usize::from(*node) % count, held),
            Op::Disconnect { node } => {
                let n = &mut self.nodes[usize::from(*node) % count];
                if let Some(s) = n.session.take() {
                    self.net.node_disconnected(&n.id, s);
                }
                n.rx = None;
            }
            Op::Tick => self.net.tick(),
        }
        self.deliver();
    }

    fn check(&self) {
        let printers = self.net.printers();
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut jobs = Vec::new();
        for id in &self.fx.jobs {
            let job = self
                .net
                .load_job(id)
                .expect("store readable")
                .expect("fixture job exists");
            let state = job.state;
            let active = state.on_printer();
            if active {
                assert!(!job.printer.is_empty(), "{id} is {state:?} on no printer");
            }
            if !job.state.is_terminal() && !job.printer.is_empty() {
                *counts.entry(job.printer.clone()).or_default() += 1;
            }
            jobs.push((id, job, active));
        }
        for p in &printers {
            let want = counts.remove(&p.name).unwrap_or(0);
            assert_eq!(
                p.active_jobs, want,
                "{} counts {} active jobs, the store has {want}",
                p.name, p.active_jobs
            );
        }
        assert!(
            counts.is_empty(),
            "jobs on unregistered printers: {counts:?}"
        );
        for (id, job, active) in jobs {
            let name = format!("jobs/{id}");
            let holders: Vec<&NodeSim> = self
                .nodes
                .iter()
                .filter(|n| n.held.get(&name).is_some_and(|h| h.0 == job.epoch))
                .collect();
            assert!(
                holders.len() <= 1,
                "{name} epoch {} held by {:?}",
                job.epoch,
                holders.iter().map(|n| &n.id).collect::<Vec<_>>()
            );
            if active && let Some(n) = holders.first() {
                assert!(
                    job.printer.starts_with(&format!("nodes/{}/", n.id)),
                    "{name} is on {} but node {} holds its epoch {}",
                    job.printer,
                    n.id,
                    job.epoch
                );
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read template") {
        let e = e.expect("entry");
        let target: PathBuf = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn run(input: &Input) {
    let fx = fixture::get();
    let dir = fabrouter_fuzz::scratch_dir().expect("temp dir");
    copy_dir(fx.dir.path(), dir.path());
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("open copy"));
    let mut config = Config::embedded(dir.path());
    config.network = NetworkConfig {
        lease_s: if input.short_lease { 0.0 } else { 1e6 },
        lost_grace_s: if input.short_grace { 0.0 } else { 1e6 },
        max_reroutes: 3,
    };
    let state = Arc::new(State {
        config: config.clone(),
        store,
        metrics: fabrouter_server::metrics::Metrics::new(),
        upload_budget: Arc::new(tokio::sync::Semaphore::new(1024)),
    });
    let catalog = Arc::new(StoreCatalog {
        state: state.clone(),
        profiles: fx.profiles.clone(),
    });
    let net = Network::load(
        state.store.clone(),
        Arc::new(ProstCodec),
        catalog,
        config.network,
    )
    .expect("load");
    let mut world = World {
        net,
        fx,
        nodes: fx
            .nodes
            .iter()
            .map(|(id, specs)| NodeSim {
                id: id.clone(),
                printers: specs.iter().map(|s| s.printer_id.clone()).collect(),
                session: None,
                rx: None,
                held: HashMap::new(),
            })
            .collect(),
    };
    // Every node comes back holding what the fixture gave it.
    for node in 0..world.nodes.len() {
        let held: Vec<Held> = fx.held[node]
            .iter()
            .map(|&job| Held {
                job,
                epoch: EpochRef::Current,
                printer: 0,
            })
            .collect();
        world.connect(node, &held);
    }
    world.deliver();
    world.check();
    for op in input.ops.iter().take(64) {
        world.step(op);
        world.check();
    }
    world.net.close();
}

fuzz_target!(|input: Input| {
    run(&input);
});
