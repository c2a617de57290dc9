//! The authorization matrix over real gRPC on loopback: every RPC of every service, read from
//! the API's own descriptors (an RPC added later without a row here fails), called by every
//! kind of caller, with a simulated node that holds a job over the real node protocol. Each
//! cell's answer is written down in `TABLE`; every refused call is checked to have changed
//! nothing (designs, jobs, tokens, node identities, stored bytes).

use std::collections::BTreeSet;
use std::path::Path;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::estimate_service_client::EstimateServiceClient;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use fabrouter_server::access::Rpc;
use fabrouter_testkit::router::*;
use prost::Message;
use tonic::{Code, Status};

/// What each caller (columns) gets from each RPC (rows): OK, NF (NOT_FOUND), PD
/// (PERMISSION_DENIED), UA (UNAUTHENTICATED). The resource of a call is the owner's design, or
/// the owner's job on that design, assigned to the holder node's printer, or an upload session
/// the owner began (private to the owner, even from an admin). `designer` is another
/// designer, `node` a node that holds no job. Rows run in this order: NodeSession last, as the
/// holder's new session replaces the one holding the job.
const TABLE: &str = "
RPC                            owner designer marketplace operator admin holder node revoked none garbage
DesignService/UploadDesign     OK    OK       OK          PD       OK    PD     PD   UA      UA   UA
DesignService/GetDesign        OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
DesignService/ListDesigns      OK    OK       OK          PD       OK    PD     PD   UA      UA   UA
DesignService/DeleteDesign     OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
DesignService/GetMeshReport    OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
DesignService/RepairDesign     OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
DesignService/DownloadDesign   OK    NF       NF          PD       OK    OK     NF   UA      UA   UA
DesignService/BeginUpload      OK    OK       OK          PD       OK    PD     PD   UA      UA   UA
DesignService/AppendUpload     OK    NF       NF          PD       NF    PD     PD   UA      UA   UA
DesignService/GetUpload        OK    NF       NF          PD       NF    PD     PD   UA      UA   UA
DesignService/CommitUpload     OK    NF       NF          PD       NF    PD     PD   UA      UA   UA
EstimateService/EstimateDesign OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
EstimateService/ListProfiles   OK    OK       OK          OK       OK    PD     PD   UA      UA   UA
JobService/QuoteJob            OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/SubmitJob           OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/GetJob              OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/ListJobs            OK    OK       OK          PD       OK    PD     PD   UA      UA   UA
JobService/CancelJob           OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/PauseJob            OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/ResumeJob           OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
JobService/WatchJob            OK    NF       NF          PD       OK    PD     PD   UA      UA   UA
NodeService/ListPrinters       OK    OK       OK          OK       OK    PD     PD   UA      UA   UA
NodeService/GetPrinter         OK    OK       OK          OK       OK    PD     PD   UA      UA   UA
AdminService/CreateToken       PD    PD       PD          PD       OK    PD     PD   UA      UA   UA
AdminService/ListTokens        PD    PD       PD          PD       OK    PD     PD   UA      UA   UA
AdminService/RevokeToken       PD    PD       PD          PD       OK    PD     PD   UA      UA   UA
AdminService/CreateNode        PD    PD       PD          PD       OK    PD     PD   UA      UA   UA
AdminService/WhoAmI            OK    OK       OK          OK       OK    OK     OK   UA      UA   UA
NodeService/NodeSession        PD    PD       PD          PD       PD    OK     OK   UA      UA   UA
";

const CALLERS: [&str; 10] = [
    "owner",
    "designer",
    "marketplace",
    "operator",
    "admin",
    "holder",
    "node",
    "revoked",
    "none",
    "garbage",
];

/// RPCs whose allowed call destroys or changes its resource: each cell gets its own.
const FRESH_RESOURCE: [&str; 5] = [
    "DesignService/DeleteDesign",
    "DesignService/RepairDesign",
    "JobService/CancelJob",
    "JobService/PauseJob",
    "JobService/ResumeJob",
];

const PROFILE: &str = "prusaslicer-b";
const PRINTER: &str = "nodes/holder/printers/mk3";

/// The table's rows, as (RPC, expected answer per caller).
fn table() -> Vec<(String, Vec<String>)> {
    let mut lines = TABLE.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[1..], CALLERS, "the table's columns");
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells.len(), CALLERS.len() + 1, "row {l:?}");
            for c in &cells[1..] {
                assert!(["OK", "NF", "PD", "UA"].contains(c), "cell {c:?} in {l:?}");
            }
            (
                cells[0].to_string(),
                cells[1..].iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect()
}

/// Every `Service/Method` the API declares.
fn api_rpcs() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(fabrouter_api::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package() == "fabrouter.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect()
}

#[test]
fn every_rpc_of_the_api_has_a_row_and_a_rule() {
    let api = api_rpcs();
    assert!(api.len() >= 20, "descriptors read: {api:?}");
    let rows: Vec<String> = table().into_iter().map(|(rpc, _)| rpc).collect();
    let in_table: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(in_table.len(), rows.len(), "a row appears twice");
    assert_eq!(in_table, api, "rows of TABLE vs RPCs of the API");
    let ruled: BTreeSet<String> = Rpc::ALL
        .iter()
        .map(|r| {
            let (service, method) = r.service_method();
            format!("{service}/{method}")
        })
        .collect();
    assert_eq!(ruled, api, "access::Rpc::ALL vs RPCs of the API");
}

/// Sends `authorization: Bearer {credential}`, or nothing.
#[derive(Clone)]
struct Cred(Option<String>);

impl tonic::service::Interceptor for Cred {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(c) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {c}").parse().unwrap());
        }
        Ok(req)
    }
}

/// What one cell acts on.
struct Target {
    design: String,
    job: String,
    idempotency_key: String,
    /// Bytes no other upload has: a refused upload must leave no blob.
    stl: Vec<u8>,
    /// A designer token for RevokeToken to aim at.
    victim_token: String,
    node_id: String,
    /// An upload session of the owner's (`uploads/{id}`) holding `stl`: all of it for a
    /// commit or a read, nothing yet for an append.
    upload: String,
}

/// What a refused call must not change, as stored.
struct Snapshot {
    /// Every principal's designs, as (owner, id).
    designs: Vec<(String, String)>,
    /// Every principal's jobs, as (id, version): any change bumps the version.
    jobs: Vec<(String, u64)>,
    tokens: Vec<String>,
    blobs: usize,
    target_node_exists: bool,
}

impl Snapshot {
    /// What differs in `after`, one line per change.
    fn changes(&self, after: &Snapshot) -> Vec<String> {
        fn diff<T: PartialEq + std::fmt::Debug>(what: &str, a: &[T], b: &[T]) -> Vec<String> {
            let gone = a
                .iter()
                .filter(|x| !b.contains(x))
                .map(|x| format!("{what} gone: {x:?}"));
            let new = b
                .iter()
                .filter(|x| !a.contains(x))
                .map(|x| format!("{what} new: {x:?}"));
            gone.chain(new).collect()
        }
        let mut out = diff("design", &self.designs, &after.designs);
        out.extend(diff("job", &self.jobs, &after.jobs));
        out.extend(diff("token", &self.tokens, &after.tokens));
        if self.blobs != after.blobs {
            out.push(format!("blob files {} -> {}", self.blobs, after.blobs));
        }
        if self.target_node_exists != after.target_node_exists {
            out.push("the node identity was created".into());
        }
        out
    }
}

struct World {
    r: Router,
    owner: String,
    /// Credential per column of the table (None: no authorization header).
    creds: Vec<Option<String>>,
    design: String,
    job: String,
    holder: SimNode,
    /// The epoch of the newest job the holder was given.
    epoch: u64,
    cells: u32,
}

impl World {
    async fn new(dir: &Path) -> World {
        // Long leases: nothing may expire while the matrix runs.
        let r = Router::start(dir, 600.0, 600.0).await;
        let owner = r.designer().await;
        let holder_creds = r.node_credentials("holder").await;
        let other_node = r.node_credentials("node").await;
        let holder = SimNode::connect(
            &r,
            &holder_creds,
            "holder",
            vec![printer("mk3", BERLIN, pb::Technology::Fdm, 200.0)],
            vec![],
        )
        .await;
        let (revoked_name, revoked) = named_token(&r, pb::Role::Designer).await;
        r.admin()
            .revoke_token(pb::RevokeTokenRequest { name: revoked_name })
            .await
            .unwrap();
        let creds = vec![
            Some(owner.clone()),
            Some(r.designer().await),
            Some(r.token(pb::Role::Marketplace).await),
            Some(r.token(pb::Role::Operator).await),
            Some(r.admin.clone()),
            Some(holder_creds),
            Some(other_node),
            Some(revoked),
            None,
            Some("not-a-token".into()),
        ];
        let mut w = World {
            design: String::new(),
            job: String::new(),
            r,
            owner,
            creds,
            holder,
            epoch: 0,
            cells: 0,
        };
        (w.design, w.job) = w.design_with_job().await;
        w
    }

    /// A new design of the owner's with a job on it, assigned to the holder node.
    async fn design_with_job(&mut self) -> (String, String) {
        let design = self.r.cube(&self.owner, 20.0).await;
        self.cells += 1;
        let key = format!("fixture-{}", self.cells);
        let job = submit_one(&mut self.r.jobs(&self.owner), &design, &key)
            .await
            .name;
        // The holder really has it: the assignment came down its stream.
        let epoch = loop {
            let a = self.holder.assignment().await;
            if a.job == job {
                break a.epoch;
            }
        };
        self.epoch = epoch;
        (design, job)
    }

    /// Brings a fresh job to the state the RPC acts on: printing for a pause, paused for a
    /// resume (so that an allowed call succeeds and a refused one could have changed it).
    async fn ready_for(&mut self, rpc: &str, job: &str) {
        if !matches!(rpc, "JobService/PauseJob" | "JobService/ResumeJob") {
            return;
        }
        let mut jobs = self.r.jobs(&self.owner);
        self.holder.progress(job, self.epoch, 0.3);
        wait_state(&mut jobs, job, pb::JobState::Printing).await;
        if rpc == "JobService/ResumeJob" {
            jobs.pause_job(pb::PauseJobRequest { name: job.into() })
                .await
                .unwrap();
            loop {
                if let pb::router_message::Msg::Pause(p) = self.holder.next().await {
                    assert_eq!(p.job, job);
                    break;
                }
            }
        }
    }

    async fn target(&mut self, rpc: &str) -> Target {
        let (design, job) = if FRESH_RESOURCE.contains(&rpc) {
            let (design, job) = self.design_with_job().await;
            self.ready_for(rpc, &job).await;
            (design, job)
        } else {
            (self.design.clone(), self.job.clone())
        };
        self.cells += 1;
        let n = self.cells;
        let victim_token = if rpc == "AdminService/RevokeToken" {
            named_token(&self.r, pb::Role::Designer).await.0
        } else {
            String::new()
        };
        let stl = cube_stl(5.0 + n as f32 / 8.0);
        let upload = if matches!(
            rpc,
            "DesignService/AppendUpload" | "DesignService/GetUpload" | "DesignService/CommitUpload"
        ) {
            let mut c = self.r.designs(&self.owner);
            let s = c
                .begin_upload(pb::BeginUploadRequest {
                    metadata: Some(upload_metadata(&stl)),
                })
                .await
                .unwrap()
                .into_inner();
            if rpc != "DesignService/AppendUpload" {
                append_all(&mut c, &s.name, &stl).await;
            }
            s.name
        } else {
            String::new()
        };
        Target {
            design,
            job,
            idempotency_key: format!("cell-{n}"),
            stl,
            victim_token,
            node_id: format!("cell-node-{n}"),
            upload,
        }
    }

    /// Commits the cell's upload session as its owner (sessions per principal are bounded).
    async fn finish_upload(&self, t: &Target) {
        if t.upload.is_empty() {
            return;
        }
        let mut c = self.r.designs(&self.owner);
        let held = c
            .get_upload(pb::GetUploadRequest {
                name: t.upload.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if held.design.is_empty() {
            if held.received_bytes == 0 {
                append_all(&mut c, &t.upload, &t.stl).await;
            }
            c.commit_upload(pb::CommitUploadRequest {
                name: t.upload.clone(),
            })
            .await
            .unwrap();
        }
    }

    fn snapshot(&self, t: &Target, dir: &Path) -> Snapshot {
        let store = &self.r.state().store;
        let tokens = store.list_tokens().unwrap();
        let mut principals: Vec<String> = tokens.iter().map(|t| t.principal.clone()).collect();
        principals.extend(["node-holder".to_string(), "node-node".to_string()]);
        let mut designs = Vec::new();
        let mut jobs = Vec::new();
        for p in &principals {
            let mine = store.list_designs(p, None, usize::MAX).unwrap();
            designs.extend(mine.into_iter().map(|d| (d.owner, d.id)));
            let mine = store.list_jobs(p, None, usize::MAX).unwrap();
            jobs.extend(mine.into_iter().map(|j| (j.id, j.version)));
        }
        Snapshot {
            designs,
            jobs,
            tokens: tokens.into_iter().map(|t| t.id).collect(),
            blobs: files_under(&dir.join("blobs")),
            target_node_exists: store.get_node(&t.node_id).unwrap().is_some(),
        }
    }

    /// Makes the call; streaming calls answer with their first message.
    async fn call(&self, rpc: &str, cred: &Option<String>, t: &Target) -> Result<(), Status> {
        let (ch, cred) = (self.r.channel.clone(), Cred(cred.clone()));
        let designs = || DesignServiceClient::with_interceptor(ch.clone(), cred.clone());
        let jobs = || JobServiceClient::with_interceptor(ch.clone(), cred.clone());
        let nodes = || NodeServiceClient::with_interceptor(ch.clone(), cred.clone());
        let estimates = || EstimateServiceClient::with_interceptor(ch.clone(), cred.clone());
        let admin = || AdminServiceClient::with_interceptor(ch.clone(), cred.clone());
        let design = t.design.clone();
        let job = t.job.clone();
        match rpc {
            "DesignService/UploadDesign" => {
                let msgs = upload_messages(t.stl.clone());
                designs().upload_design(tokio_stream::iter(msgs)).await?;
            }
            "DesignService/GetDesign" => {
                let d = designs()
                    .get_design(pb::GetDesignRequest { name: design })
                    .await?;
                assert_eq!(d.into_inner().name, t.design);
            }
            "DesignService/ListDesigns" => {
                designs()
                    .list_designs(pb::ListDesignsRequest::default())
                    .await?;
            }
            "DesignService/DeleteDesign" => {
                designs()
                    .delete_design(pb::DeleteDesignRequest { name: design })
                    .await?;
            }
            "DesignService/GetMeshReport" => {
                designs()
                    .get_mesh_report(pb::GetMeshReportRequest { name: design })
                    .await?;
            }
            "DesignService/RepairDesign" => {
                designs()
                    .repair_design(pb::RepairDesignRequest { name: design })
                    .await?;
            }
            "DesignService/DownloadDesign" => {
                let mut s = designs()
                    .download_design(pb::DownloadDesignRequest { name: design })
                    .await?
                    .into_inner();
                let first = s.message().await?.expect("a first chunk");
                assert_eq!(first.total_size_bytes, cube_stl(20.0).len() as u64);
            }
            "DesignService/BeginUpload" => {
                let s = designs()
                    .begin_upload(pb::BeginUploadRequest {
                        metadata: Some(upload_metadata(&t.stl)),
                    })
                    .await?
                    .into_inner();
                // Commit it, so the owner's open sessions stay under the bound.
                let mut c = designs();
                c.append_upload(pb::AppendUploadRequest {
                    name: s.name.clone(),
                    offset: 0,
                    chunk: t.stl.clone(),
                })
                .await?;
                c.commit_upload(pb::CommitUploadRequest { name: s.name })
                    .await?;
            }
            "DesignService/AppendUpload" => {
                designs()
                    .append_upload(pb::AppendUploadRequest {
                        name: t.upload.clone(),
                        offset: 0,
                        chunk: t.stl.clone(),
                    })
                    .await?;
            }
            "DesignService/GetUpload" => {
                let s = designs()
                    .get_upload(pb::GetUploadRequest {
                        name: t.upload.clone(),
                    })
                    .await?;
                assert_eq!(s.into_inner().received_bytes, t.stl.len() as u64);
            }
            "DesignService/CommitUpload" => {
                designs()
                    .commit_upload(pb::CommitUploadRequest {
                        name: t.upload.clone(),
                    })
                    .await?;
            }
            "EstimateService/EstimateDesign" => {
                estimates()
                    .estimate_design(pb::EstimateDesignRequest {
                        design,
                        profile: PROFILE.into(),
                    })
                    .await?;
            }
            "EstimateService/ListProfiles" => {
                estimates()
                    .list_profiles(pb::ListProfilesRequest {})
                    .await?;
            }
            "JobService/QuoteJob" => {
                jobs()
                    .quote_job(pb::QuoteJobRequest {
                        spec: Some(spec(&design, POTSDAM)),
                        max_options: 1,
                    })
                    .await?;
            }
            "JobService/SubmitJob" => {
                jobs()
                    .submit_job(pb::SubmitJobRequest {
                        spec: Some(spec(&design, POTSDAM)),
                        printer: String::new(),
                        idempotency_key: t.idempotency_key.clone(),
                    })
                    .await?;
            }
            "JobService/GetJob" => {
                jobs().get_job(pb::GetJobRequest { name: job }).await?;
            }
            "JobService/ListJobs" => {
                jobs().list_jobs(pb::ListJobsRequest::default()).await?;
            }
            "JobService/CancelJob" => {
                jobs()
                    .cancel_job(pb::CancelJobRequest {
                        name: job,
                        reason: String::new(),
                    })
                    .await?;
            }
            "JobService/PauseJob" => {
                let j = jobs().pause_job(pb::PauseJobRequest { name: job }).await?;
                assert_eq!(j.into_inner().state, pb::JobState::Paused as i32);
            }
            "JobService/ResumeJob" => {
                let j = jobs()
                    .resume_job(pb::ResumeJobRequest { name: job })
                    .await?;
                assert_eq!(j.into_inner().state, pb::JobState::Printing as i32);
            }
            "JobService/WatchJob" => {
                let mut s = jobs()
                    .watch_job(pb::WatchJobRequest {
                        name: job,
                        from_sequence: 0,
                    })
                    .await?
                    .into_inner();
                let first = s.message().await?.expect("a first event");
                assert_eq!(first.job, t.job);
            }
            "NodeService/ListPrinters" => {
                let p = nodes()
                    .list_printers(pb::ListPrintersRequest::default())
                    .await?;
                assert_eq!(p.into_inner().printers[0].name, PRINTER);
            }
            "NodeService/GetPrinter" => {
                nodes()
                    .get_printer(pb::GetPrinterRequest {
                        name: PRINTER.into(),
                    })
                    .await?;
            }
            "NodeService/NodeSession" => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tx.send(pb::NodeMessage {
                    msg: Some(pb::node_message::Msg::Hello(pb::NodeHello::default())),
                })
                .unwrap();
                let mut s = nodes()
                    .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
                    .await?
                    .into_inner();
                let first = s.message().await?.expect("a first message");
                assert!(
                    matches!(first.msg, Some(pb::router_message::Msg::Welcome(_))),
                    "{first:?}"
                );
            }
            "AdminService/CreateToken" => {
                admin()
                    .create_token(pb::CreateTokenRequest {
                        role: pb::Role::Admin as i32,
                        label: "minted".into(),
                    })
                    .await?;
            }
            "AdminService/ListTokens" => {
                admin().list_tokens(pb::ListTokensRequest {}).await?;
            }
            "AdminService/RevokeToken" => {
                admin()
                    .revoke_token(pb::RevokeTokenRequest {
                        name: t.victim_token.clone(),
                    })
                    .await?;
            }
            "AdminService/CreateNode" => {
                admin()
                    .create_node(pb::CreateNodeRequest {
                        node_id: t.node_id.clone(),
                        label: String::new(),
                    })
                    .await?;
            }
            "AdminService/WhoAmI" => {
                admin().who_am_i(pb::WhoAmIRequest {}).await?;
            }
            other => panic!("{other} has a row in TABLE but no call in World::call"),
        }
        Ok(())
    }
}

fn upload_metadata(stl: &[u8]) -> pb::UploadMetadata {
    pb::UploadMetadata {
        file_name: "cell.stl".into(),
        declared_size_bytes: stl.len() as u64,
        sha256: String::new(),
        format: pb::DesignFormat::Stl as i32,
    }
}

async fn append_all(c: &mut DesignServiceClient<Authed>, name: &str, stl: &[u8]) {
    c.append_upload(pb::AppendUploadRequest {
        name: name.into(),
        offset: 0,
        chunk: stl.to_vec(),
    })
    .await
    .unwrap();
}

/// A new token: its name (`tokens/{id}`) and secret.
async fn named_token(r: &Router, role: pb::Role) -> (String, String) {
    let t = r
        .admin()
        .create_token(pb::CreateTokenRequest {
            role: role as i32,
            label: "named".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (t.token.unwrap().name, t.secret)
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

fn answer(res: &Result<(), Status>) -> String {
    match res {
        Ok(()) => "OK".into(),
        Err(s) => match s.code() {
            Code::NotFound => "NF".into(),
            Code::PermissionDenied => "PD".into(),
            Code::Unauthenticated => "UA".into(),
            other => format!("{other:?} ({})", s.message()),
        },
    }
}

#[tokio::test]
async fn every_caller_gets_its_answer_from_every_rpc_and_a_refusal_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(dir.path()).await;
    let mut wrong = Vec::new();
    for (rpc, want) in table() {
        for (i, caller) in CALLERS.iter().enumerate() {
            let t = w.target(&rpc).await;
            let refused = want[i] != "OK";
            let before = if refused {
                Some(w.snapshot(&t, dir.path()))
            } else {
                None
            };
            let res = w.call(&rpc, &w.creds[i], &t).await;
            let got = answer(&res);
            if got != want[i] {
                wrong.push(format!("{rpc} as {caller}: want {}, got {got}", want[i]));
            }
            if let Some(before) = before {
                let changes = before.changes(&w.snapshot(&t, dir.path()));
                if !changes.is_empty() {
                    wrong.push(format!(
                        "{rpc} as {caller} was refused but changed: {}",
                        changes.join("; ")
                    ));
                }
            }
            w.finish_upload(&t).await;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    w.r.stop().await;
}
