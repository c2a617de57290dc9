//! DesignService: streamed uploads checked while they arrive, the mesh report, repair, listing,
//! download and delete. A design belongs to the principal that uploaded it.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::names;
use fabrouter_api::v1 as pb;
use fabrouter_api::v1::design_service_server::DesignService;
use fabrouter_gcode as gcode;
use fabrouter_mesh as mesh;
use fabrouter_store::{DesignRecord, sha256_hex};
use prost::Message;
use sha2::Digest;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::State;
use crate::access::{self, DesignUse, Principal, Rpc};
use crate::errors::{bad_request, denied, limit_exceeded, store_status};

/// Bytes per message when streaming a design back.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// Longest accepted file name.
const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest G-code line accepted (firmware takes about 96 bytes; slicers write long comments).
pub const MAX_GCODE_LINE_BYTES: usize = 64 * 1024;

/// What checks an upload while it streams: the STL scanner, or the G-code analyzer, which
/// reads pre-sliced files whole in one pass.
enum Scan {
    Mesh(mesh::UploadScanner),
    Gcode(Box<gcode::Scanner>),
}

impl Scan {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), Status> {
        match self {
            Scan::Mesh(s) => s.feed(chunk).map_err(scan_status),
            Scan::Gcode(s) => s.feed(chunk).map_err(gcode_status),
        }
    }
}

/// One upload on its way in: the checks run on each chunk as it arrives, the bytes so far, their
/// hash, and its share of the in-flight budget (released when this is dropped). UploadDesign's
/// stream and an upload session (`uploads`) feed the same pipeline, so both apply the same
/// limits and give the same errors.
pub(crate) struct Ingest {
    meta: pb::UploadMetadata,
    scanner: Scan,
    mesh_limits: mesh::Limits,
    bytes: Vec<u8>,
    hasher: sha2::Sha256,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

impl Ingest {
    /// Validates the metadata, sets up the checks and takes room for the declared size from
    /// the in-flight budget.
    pub(crate) fn begin(state: &State, meta: pb::UploadMetadata) -> Result<Ingest, Status> {
        validate_metadata(&meta)?;
        let format =
            pb::DesignFormat::try_from(meta.format).unwrap_or(pb::DesignFormat::Unspecified);
        let limits = &state.config.limits;
        let mesh_limits = mesh::Limits {
            max_bytes: limits.max_upload_bytes,
            max_triangles: limits.max_triangles,
            ..mesh::Limits::default()
        };
        let scanner = if format == pb::DesignFormat::Gcode {
            let limits = gcode::Limits {
                max_bytes: limits.max_upload_bytes,
                max_line_bytes: MAX_GCODE_LINE_BYTES,
            };
            Scan::Gcode(Box::new(
                gcode::Scanner::new(meta.declared_size_bytes, limits).map_err(gcode_status)?,
            ))
        } else {
            Scan::Mesh(
                mesh::UploadScanner::new(meta.declared_size_bytes, mesh_limits)
                    .map_err(scan_status)?,
            )
        };
        // The whole file is needed in memory to check the mesh; the budget caps how much all
        // uploads together may hold, and the scanner stops an upload the moment it breaks a limit.
        let permits = u32::try_from(meta.declared_size_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let budget = state
            .upload_budget
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                Status::unavailable("the server is busy with other uploads; retry in a minute")
            })?;
        Ok(Ingest {
            bytes: Vec::with_capacity(meta.declared_size_bytes as usize),
            meta,
            scanner,
            mesh_limits,
            hasher: sha2::Sha256::new(),
            _budget: budget,
        })
    }

    /// Checks and keeps the next chunk; an error means the upload is over.
    pub(crate) fn feed(&mut self, state: &State, chunk: &[u8]) -> Result<(), Status> {
        self.scanner.feed(chunk)?;
        state.metrics.upload_bytes.inc_by(chunk.len() as u64);
        self.hasher.update(chunk);
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes received so far.
    pub(crate) fn received(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn meta(&self) -> &pb::UploadMetadata {
        &self.meta
    }
}

#[derive(Clone)]
pub struct Designs {
    pub state: Arc<State>,
    /// Tells whether a node holds a job for a design (the access rules let it download that).
    pub net: Option<Arc<fabrouter_router::Network>>,
}

impl Designs {
    /// Loads a design for `use_`, if the access rules let the caller do that to it.
    pub(crate) fn design(
        &self,
        who: &Principal,
        name: &str,
        use_: DesignUse,
    ) -> Result<DesignRecord, Status> {
        let id = names::parse(name, "designs").ok_or_else(|| {
            bad_request(
                "name",
                format!("{name:?} is not a design name like designs/{{id}}"),
            )
        })?;
        let rec = self.state.store.get_design(id).map_err(store_status)?;
        let held = || {
            self.net
                .as_ref()
                .is_some_and(|n| n.node_holds_design(&who.credential, id))
        };
        access::design(
            who,
            use_,
            name,
            rec.as_ref().map(|r| r.owner.as_str()),
            held,
        )
        .map_err(denied)?;
        // The rules grant nothing on a missing design; this only unwraps.
        rec.ok_or_else(|| Status::not_found(format!("{name} not found")))
    }

    async fn receive(
        &self,
        who: &Principal,
        mut stream: Streaming<pb::UploadDesignRequest>,
    ) -> Result<pb::Design, Status> {
        let first = stream
            .next()
            .await
            .ok_or_else(|| bad_request("metadata", "the upload stream was empty"))??;
        let Some(pb::upload_design_request::Payload::Metadata(meta)) = first.payload else {
            return Err(bad_request(
                "metadata",
                "the first upload message must carry metadata (file name, declared size)",
            ));
        };
        let mut ingest = Ingest::begin(&self.state, meta)?;
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            match msg.payload {
                Some(pb::upload_design_request::Payload::Chunk(chunk)) => {
                    ingest.feed(&self.state, &chunk)?;
                }
                Some(pb::upload_design_request::Payload::Metadata(_)) => {
                    return Err(bad_request(
                        "metadata",
                        "metadata may only be sent once, first",
                    ));
                }
                None => {}
            }
        }
        self.store_upload(who, ingest).await
    }

    /// Finishes the checks of a received upload (size, sha256, the mesh or G-code report) and
    /// stores the design: the end of UploadDesign and of an upload session alike.
    pub(crate) async fn store_upload(
        &self,
        who: &Principal,
        ingest: Ingest,
    ) -> Result<pb::Design, Status> {
        let Ingest {
            meta,
            scanner,
            mesh_limits,
            bytes,
            hasher,
            _budget,
        } = ingest;
        let gcode_summary = match scanner {
            Scan::Mesh(s) => {
                s.finish().map_err(scan_status)?;
                None
            }
            Scan::Gcode(s) => Some(s.finish().map_err(gcode_status)?),
        };
        let sha = hex::encode(hasher.finalize());
        if !meta.sha256.is_empty() && !meta.sha256.eq_ignore_ascii_case(&sha) {
            return Err(bad_request(
                "sha256",
                format!(
                    "the received bytes hash to {sha}, not the declared {}; the file changed or was corrupted in transit",
                    meta.sha256
                ),
            ));
        }
        let (format, bytes, report) = match gcode_summary {
            Some(summary) => (
                pb::DesignFormat::Gcode,
                bytes,
                gcode_report_pb(&summary).encode_to_vec(),
            ),
            None => {
                let (bytes, report) = tokio::task::spawn_blocking(move || {
                    let checked = mesh::check_stl(&bytes, &mesh_limits);
                    checked.map(|c| (bytes, stl_check_pb(&c)))
                })
                .await
                .map_err(|e| Status::internal(format!("mesh check failed: {e}")))?
                .map_err(parse_status)?;
                (pb::DesignFormat::Stl, bytes, report.encode_to_vec())
            }
        };
        let rec = DesignRecord {
            id: uuid::Uuid::now_v7().simple().to_string(),
            owner: who.id.clone(),
            file_name: meta.file_name.clone(),
            size_bytes: bytes.len() as u64,
            sha256: sha,
            format: format as i32,
            created_unix_ms: crate::auth::now_unix_ms(),
            report,
            repaired_from: None,
        };
        self.put(rec, bytes).await
    }

    /// Writes the checked bytes through the store's blob writer, then stores the record that
    /// refers to them (the store's rule: bytes committed first, so a record never lacks them).
    async fn put(&self, rec: DesignRecord, bytes: Vec<u8>) -> Result<pb::Design, Status> {
        let store = self.state.store.clone();
        let rec = tokio::task::spawn_blocking(move || {
            let mut writer = store.blobs().writer()?;
            writer.write_all(&bytes)?;
            drop(bytes);
            let blob = writer.commit()?;
            store.put_design(&rec, &blob).map(|_| rec)
        })
        .await
        .map_err(|e| Status::internal(format!("storing the design failed: {e}")))?
        .map_err(store_status)?;
        tracing::info!(design = %rec.id, bytes = rec.size_bytes, sha256 = %rec.sha256, "design stored");
        Ok(design_to_pb(&rec))
    }

    /// Reads a stored design's bytes whole (for repair and estimates, which need the mesh).
    pub(crate) async fn load_bytes(&self, rec: &DesignRecord) -> Result<Vec<u8>, Status> {
        let store = self.state.store.clone();
        let sha = rec.sha256.clone();
        tokio::task::spawn_blocking(move || store.blobs().read_all(&sha).map_err(store_status))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
    }
}

fn validate_metadata(meta: &pb::UploadMetadata) -> Result<(), Status> {
    if meta.file_name.trim().is_empty() {
        return Err(bad_request("metadata.file_name", "a file name is required"));
    }
    if meta.file_name.len() > MAX_FILE_NAME_BYTES || meta.file_name.chars().any(char::is_control) {
        return Err(bad_request(
            "metadata.file_name",
            format!(
                "the file name must be at most {MAX_FILE_NAME_BYTES} bytes without control characters"
            ),
        ));
    }
    if meta.declared_size_bytes == 0 {
        return Err(bad_request(
            "metadata.declared_size_bytes",
            "declare the file's exact size in bytes (it was 0)",
        ));
    }
    if !meta.sha256.is_empty()
        && (meta.sha256.len() != 64 || !meta.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad_request(
            "metadata.sha256",
            "sha256 must be 64 hex digits, or empty",
        ));
    }
    Ok(())
}

fn scan_status(e: mesh::ScanError) -> Status {
    if e.is_limit() {
        limit_exceeded("upload", e.to_string())
    } else {
        bad_request("file", e.to_string())
    }
}

fn gcode_status(e: gcode::GcodeError) -> Status {
    if e.is_limit() {
        limit_exceeded("upload", e.to_string())
    } else {
        bad_request("file", format!("not usable G-code: {e}"))
    }
}

fn parse_status(e: mesh::ParseError) -> Status {
    if e.is_limit() {
        limit_exceeded("upload", e.to_string())
    } else {
        bad_request("file", format!("not a readable STL: {e}"))
    }
}

pub(crate) fn timestamp(unix_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_ms.div_euclid(1000),
        nanos: (unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn design_to_pb(rec: &DesignRecord) -> pb::Design {
    pb::Design {
        name: names::design(&rec.id),
        file_name: rec.file_name.clone(),
        size_bytes: rec.size_bytes,
        sha256: rec.sha256.clone(),
        format: rec.format,
        create_time: Some(timestamp(rec.created_unix_ms)),
        owner: format!("principals/{}", rec.owner),
        mesh_report: (!is_gcode(rec))
            .then(|| pb::MeshReport::decode(rec.report.as_slice()).ok())
            .flatten(),
        gcode_report: is_gcode(rec)
            .then(|| pb::GcodeReport::decode(rec.report.as_slice()).ok())
            .flatten(),
        repaired_from: rec
            .repaired_from
            .as_deref()
            .map(names::design)
            .unwrap_or_default(),
    }
}

/// Whether the design is pre-sliced G-code (its record holds a G-code report, not a mesh one).
pub(crate) fn is_gcode(rec: &DesignRecord) -> bool {
    rec.format == pb::DesignFormat::Gcode as i32
}

/// The G-code analyzer's summary in the API's words, with what could not be checked.
pub fn gcode_report_pb(s: &gcode::Summary) -> pb::GcodeReport {
    pb::GcodeReport {
        lines: s.lines,
        commands: s.commands,
        generator: s.generator.clone().unwrap_or_default(),
        firmware_flavor: s.flavor.clone().unwrap_or_default(),
        nozzle_mm: s.nozzle_mm.unwrap_or(0.0),
        filament_type: s.filament_type.clone().unwrap_or_default(),
        print_min_mm: Some(vec3(s.print_min_mm)),
        print_max_mm: Some(vec3(s.print_max_mm)),
        layers: s.layers,
        layer_height_mm: s.layer_height_mm.unwrap_or(0.0),
        max_hotend_c: s.max_hotend_c,
        max_bed_c: s.max_bed_c,
        extruded_mm: s.extruded_mm,
        slicer_time_s: s.slicer_time_s.unwrap_or(0.0),
        slicer_filament_g: s.slicer_filament_g.unwrap_or(0.0),
        feedrate_time_s: s.feedrate_time_s,
        findings: gcode::warnings(s)
            .into_iter()
            .map(|w| pb::Finding {
                code: w.code.to_string(),
                severity: pb::Severity::Warning as i32,
                message: w.message,
            })
            .collect(),
    }
}

fn vec3(v: [f64; 3]) -> pb::Vec3 {
    pb::Vec3 {
        x: v[0],
        y: v[1],
        z: v[2],
    }
}

/// The mesh crate's report in the API's words.
pub fn report_to_pb(r: &mesh::MeshReport) -> pb::MeshReport {
    let bbox = r.bounding_box;
    pb::MeshReport {
        triangles: r.triangles,
        vertices: r.vertices,
        bbox_min_mm: bbox.map(|b| vec3(b.min)),
        bbox_max_mm: bbox.map(|b| vec3(b.max)),
        extent_mm: bbox.map(|b| vec3(b.extent)),
        surface_area_mm2: r.surface_area_mm2,
        volume_mm3: r.signed_volume_mm3,
        shells: u64::from(r.shells),
        open_edges: r.boundary_edges,
        hole_loops: r.holes,
        non_manifold_edges: r.non_manifold_edges,
        degenerate_facets: r.degenerate_facets,
        zero_normals: r.zero_normals,
        flipped_normals: r.opposing_normals,
        non_unit_normals: r.non_unit_normals,
        inconsistent_orientation_edges: r.inconsistent_edges,
        inside_out_shells: u64::from(r.inside_out_shells),
        non_finite_facets: r.non_finite_facets,
        likely_unit: match r.unit.unit {
            mesh::LengthUnit::Millimetre => pb::LengthUnit::Mm,
            mesh::LengthUnit::Inch => pb::LengthUnit::Inch,
            mesh::LengthUnit::Metre => pb::LengthUnit::M,
        } as i32,
        likely_unit_reason: r.unit.reason.clone(),
        verdict: match r.verdict {
            mesh::Verdict::Printable => pb::Verdict::Printable,
            mesh::Verdict::PrintableWithWarnings => pb::Verdict::PrintableWithWarnings,
            mesh::Verdict::NotPrintable => pb::Verdict::NotPrintable,
        } as i32,
        findings: r
            .findings
            .iter()
            .map(|f| pb::Finding {
                code: f.code.clone(),
                severity: match f.severity {
                    mesh::Severity::Info => pb::Severity::Info,
                    mesh::Severity::Warning => pb::Severity::Warning,
                    mesh::Severity::Error => pb::Severity::Error,
                } as i32,
                message: f.message.clone(),
            })
            .collect(),
        stl_format: String::new(),
        solids: 0,
        closed_shells: u64::from(r.closed_shells),
        unconnected_facets: r.unconnected_facets,
        unreadable_normals: r.unreadable_normals,
    }
}

/// The report of a parsed mesh, including what only the parse knows (format, solids).
pub fn mesh_report_pb(m: &mesh::Mesh) -> pb::MeshReport {
    with_file_facts(report_to_pb(&mesh::check(m)), m.format, m.solids)
}

/// The report of [`mesh::check_stl`], including what only the file says (format, solids).
pub fn stl_check_pb(c: &mesh::StlCheck) -> pb::MeshReport {
    with_file_facts(report_to_pb(&c.report), c.format, c.solids)
}

fn with_file_facts(mut r: pb::MeshReport, format: mesh::StlFormat, solids: u32) -> pb::MeshReport {
    r.stl_format = match format {
        mesh::StlFormat::Binary => "binary",
        mesh::StlFormat::Ascii => "ascii",
    }
    .into();
    r.solids = solids;
    r
}

type DownloadStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::DownloadDesignResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl DesignService for Designs {
    async fn upload_design(
        &self,
        request: Request<Streaming<pb::UploadDesignRequest>>,
    ) -> Result<Response<pb::Design>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::UploadDesign)?;
            self.receive(&who, request.into_inner()).await
        }
        .await;
        if let Err(e) = &res {
            tracing::info!(code = ?e.code(), reason = e.message(), "upload refused");
        }
        self.state.metrics.observe("UploadDesign", t, &res);
        res.map(Response::new)
    }

    async fn get_design(
        &self,
        request: Request<pb::GetDesignRequest>,
    ) -> Result<Response<pb::Design>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.state.authorize(request.metadata(), Rpc::GetDesign)?;
            Ok(design_to_pb(&self.design(
                &who,
                &request.get_ref().name,
                DesignUse::Read,
            )?))
        })();
        self.state.metrics.observe("GetDesign", t, &res);
        res.map(Response::new)
    }

    async fn list_designs(
        &self,
        request: Request<pb::ListDesignsRequest>,
    ) -> Result<Response<pb::ListDesignsResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.state.authorize(request.metadata(), Rpc::ListDesigns)?;
            let req = request.get_ref();
            let size = crate::page_size(req.page_size, self.state.config.limits.max_page_size);
            let after = crate::page_after(&req.page_token)?;
            // One extra tells whether another page follows.
            let mut recs = self
                .state
                .store
                .list_designs(&who.id, after, size + 1)
                .map_err(store_status)?;
            let more = recs.len() > size;
            recs.truncate(size);
            Ok(pb::ListDesignsResponse {
                next_page_token: if more {
                    recs.last().map(|r| r.id.clone()).unwrap_or_default()
                } else {
                    String::new()
                },
                designs: recs.iter().map(design_to_pb).collect(),
            })
        })();
        self.state.metrics.observe("ListDesigns", t, &res);
        res.map(Response::new)
    }

    async fn delete_design(
        &self,
        request: Request<pb::DeleteDesignRequest>,
    ) -> Result<Response<pb::DeleteDesignResponse>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::DeleteDesign)?;
            let rec = self.design(&who, &request.get_ref().name, DesignUse::Delete)?;
            let store = self.state.store.clone();
            let erased = tokio::task::spawn_blocking(move || store.delete_design(&rec.id))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(store_status)?;
            tracing::info!(design = %request.get_ref().name, blob_erased = erased, "design deleted");
            Ok(pb::DeleteDesignResponse {
                blob_erased: erased,
            })
        }
        .await;
        self.state.metrics.observe("DeleteDesign", t, &res);
        res.map(Response::new)
    }

    async fn get_mesh_report(
        &self,
        request: Request<pb::GetMeshReportRequest>,
    ) -> Result<Response<pb::MeshReport>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::GetMeshReport)?;
            let rec = self.design(&who, &request.get_ref().name, DesignUse::Read)?;
            if is_gcode(&rec) {
                return Err(Status::failed_precondition(format!(
                    "{} is pre-sliced G-code, which has no mesh; its G-code report is on the design (GetDesign)",
                    request.get_ref().name
                )));
            }
            pb::MeshReport::decode(rec.report.as_slice())
                .map_err(|e| Status::internal(format!("stored mesh report is unreadable: {e}")))
        })();
        self.state.metrics.observe("GetMeshReport", t, &res);
        res.map(Response::new)
    }

    async fn repair_design(
        &self,
        request: Request<pb::RepairDesignRequest>,
    ) -> Result<Response<pb::RepairDesignResponse>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::RepairDesign)?;
            let orig = self.design(&who, &request.get_ref().name, DesignUse::Repair)?;
            if is_gcode(&orig) {
                return Err(Status::failed_precondition(format!(
                    "{} is pre-sliced G-code; only STL meshes can be repaired",
                    request.get_ref().name
                )));
            }
            let bytes = self.load_bytes(&orig).await?;
            let limits = mesh::Limits {
                max_bytes: self.state.config.limits.max_upload_bytes,
                max_triangles: self.state.config.limits.max_triangles,
                ..mesh::Limits::default()
            };
            let (repaired, summary, report) = tokio::task::spawn_blocking(move || {
                let m = mesh::parse_stl(&bytes, &limits)?;
                let (fixed, rr) = mesh::repair(&m);
                let report = mesh_report_pb(&fixed);
                Ok::<_, mesh::ParseError>((mesh::to_binary_stl(&fixed), rr, report))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(parse_status)?;
            let stem = orig
                .file_name
                .rsplit_once('.')
                .map(|(s, _)| s)
                .unwrap_or(&orig.file_name);
            let rec = DesignRecord {
                id: uuid::Uuid::now_v7().simple().to_string(),
                owner: orig.owner.clone(),
                file_name: format!("{stem}-repaired.stl"),
                size_bytes: repaired.len() as u64,
                sha256: sha256_hex(&repaired),
                format: pb::DesignFormat::Stl as i32,
                created_unix_ms: crate::auth::now_unix_ms(),
                report: report.encode_to_vec(),
                repaired_from: Some(orig.id.clone()),
            };
            let design = self.put(rec, repaired).await?;
            Ok(pb::RepairDesignResponse {
                design: Some(design),
                summary: Some(pb::RepairSummary {
                    facets_removed: summary.degenerate_removed
                        + summary.non_finite_removed
                        + summary.unconnected_removed,
                    facets_added: summary.facets_added,
                    facets_reversed: summary.facets_reversed,
                    normals_fixed: summary.normals_fixed,
                    holes_filled: summary.holes_filled,
                    degenerate_removed: summary.degenerate_removed,
                    unconnected_removed: summary.unconnected_removed,
                }),
            })
        }
        .await;
        self.state.metrics.observe("RepairDesign", t, &res);
        res.map(Response::new)
    }

    async fn begin_upload(
        &self,
        request: Request<pb::BeginUploadRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.state.authorize(request.metadata(), Rpc::BeginUpload)?;
            let meta = request.into_inner().metadata;
            self.state.uploads.begin(&self.state, &who, meta)
        })();
        self.state.metrics.observe("BeginUpload", t, &res);
        res.map(Response::new)
    }

    async fn append_upload(
        &self,
        request: Request<pb::AppendUploadRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::AppendUpload)?;
            let req = request.into_inner();
            self.state.uploads.append(&self.state, &who, req).await
        }
        .await;
        self.state.metrics.observe("AppendUpload", t, &res);
        res.map(Response::new)
    }

    async fn get_upload(
        &self,
        request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::GetUpload)?;
            self.state
                .uploads
                .status(&who, &request.get_ref().name)
                .await
        }
        .await;
        self.state.metrics.observe("GetUpload", t, &res);
        res.map(Response::new)
    }

    async fn commit_upload(
        &self,
        request: Request<pb::CommitUploadRequest>,
    ) -> Result<Response<pb::Design>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::CommitUpload)?;
            self.state
                .uploads
                .commit(self, &who, &request.get_ref().name)
                .await
        }
        .await;
        self.state.metrics.observe("CommitUpload", t, &res);
        res.map(Response::new)
    }

    type DownloadDesignStream = DownloadStream;

    async fn download_design(
        &self,
        request: Request<pb::DownloadDesignRequest>,
    ) -> Result<Response<Self::DownloadDesignStream>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self
                .state
                .authorize(request.metadata(), Rpc::DownloadDesign)?;
            let rec = self.design(&who, &request.get_ref().name, DesignUse::Download)?;
            let blob = self
                .state
                .store
                .blobs()
                .open(&rec.sha256)
                .map_err(store_status)?;
            Ok((rec, blob))
        })();
        self.state.metrics.observe("DownloadDesign", t, &res);
        let (rec, blob) = res?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = blob;
            let mut first = true;
            loop {
                let mut buf = vec![0u8; DOWNLOAD_CHUNK_BYTES];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "reading design bytes: {e}"
                        ))));
                        return;
                    }
                };
                if n == 0 && !first {
                    return;
                }
                buf.truncate(n);
                let msg = pb::DownloadDesignResponse {
                    chunk: buf,
                    total_size_bytes: if first { rec.size_bytes } else { 0 },
                    sha256: if first {
                        rec.sha256.clone()
                    } else {
                        String::new()
                    },
                };
                first = false;
                if tx.blocking_send(Ok(msg)).is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
