//! A complete fabrouter client in one file: upload an STL, read its mesh verdict, get a quote,
//! order the print and follow the job until it ends.
//!
//! ```text
//! cargo run --example upload_and_watch -- \
//!     --server http://127.0.0.1:50051 --token $FAB_TOKEN --lat 52.39 --lon 13.06 model.stl
//! ```
//!
//! The token may also come from the environment (`FAB_TOKEN`), the server from `FAB_SERVER`.
//! Exits 0 only when the job completed. Everything here uses the generated API in
//! `fabrouter_api::v1` (from `proto/fabrouter/v1/*.proto`); copy it and adapt.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fabrouter_api::v1 as pb;
use pb::design_service_client::DesignServiceClient;
use pb::job_service_client::JobServiceClient;
use tokio::io::AsyncReadExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// Bytes per upload message: well under gRPC's default 4 MiB message limit.
const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Parser)]
#[command(about = "Upload an STL to fabrouter, order the best print and watch it")]
struct Args {
    /// Router address: http://host:port, or https://host:port for TLS.
    #[arg(long, env = "FAB_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// API token (a designer or marketplace token from `fab admin token create`).
    #[arg(long, env = "FAB_TOKEN", hide_env_values = true)]
    token: String,
    /// The customer's latitude: routing prefers near printers (the router keeps a ~1 km cell).
    #[arg(long, allow_hyphen_values = true)]
    lat: f64,
    /// The customer's longitude.
    #[arg(long, allow_hyphen_values = true)]
    lon: f64,
    /// Required material, e.g. PLA (default: any).
    #[arg(long)]
    material: Option<String>,
    /// The STL file to print.
    file: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Turns a gRPC status into a readable error naming the call, its code and the server's message.
fn rpc_error(call: &'static str) -> impl FnOnce(tonic::Status) -> String {
    move |status| format!("{call} failed: {:?}: {}", status.code(), status.message())
}

/// `JOB_STATE_COMPLETED` -> `completed`: the generated enums know their proto names.
fn word(proto_name: &str) -> String {
    let short = ["JOB_STATE_", "JOB_EVENT_KIND_", "VERDICT_", "SEVERITY_"]
        .iter()
        .find_map(|p| proto_name.strip_prefix(p))
        .unwrap_or(proto_name);
    short.to_ascii_lowercase()
}

fn state_word(state: i32) -> String {
    word(pb::JobState::try_from(state).map_or("unknown", |s| s.as_str_name()))
}

fn minutes(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

/// The whole flow. `Ok(true)` when the job completed, `Ok(false)` when it failed or was cancelled.
async fn run(args: Args) -> Result<bool, String> {
    // 1. Connect. One channel carries every service; TLS when the address is https://.
    let mut endpoint = Endpoint::from_shared(args.server.clone())
        .map_err(|e| format!("bad server address {:?}: {e}", args.server))?;
    if args.server.starts_with("https://") {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_webpki_roots())
            .map_err(|e| format!("TLS set-up: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the router at {}: {e}", args.server))?;

    // Every call carries `authorization: Bearer <token>`; an interceptor adds it.
    let header: MetadataValue<_> = format!("Bearer {}", args.token)
        .parse()
        .map_err(|_| "the token contains characters not allowed in a header".to_string())?;
    let auth = move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", header.clone());
        Ok(req)
    };
    let mut designs = DesignServiceClient::with_interceptor(channel.clone(), auth.clone());
    let mut jobs = JobServiceClient::with_interceptor(channel, auth);

    // 2. Upload: a client stream, first the metadata (name, exact size, format), then chunks.
    let path = &args.file;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let file_name = path
        .file_name()
        .map_or("model.stl".into(), |n| n.to_string_lossy().into_owned());
    let metadata = pb::UploadMetadata {
        file_name,
        declared_size_bytes: size,
        sha256: String::new(), // optional: a hex sha256 the server checks
        format: pb::DesignFormat::Stl as i32,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    // The file is read beside the call, so it is streamed and never held whole in memory.
    let reader = async move {
        use pb::upload_design_request::Payload;
        let first = pb::UploadDesignRequest {
            payload: Some(Payload::Metadata(metadata)),
        };
        if tx.send(first).await.is_err() {
            return Ok(()); // the server already ended the call; its status says why
        }
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(()); // dropping `tx` ends the stream: the upload is complete
            }
            let chunk = pb::UploadDesignRequest {
                payload: Some(Payload::Chunk(buf[..n].to_vec())),
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let call = designs.upload_design(tokio_stream::wrappers::ReceiverStream::new(rx));
    let (response, read) = tokio::join!(call, reader);
    read.map_err(|e: std::io::Error| format!("reading {}: {e}", path.display()))?;
    let design = response.map_err(rpc_error("UploadDesign"))?.into_inner();
    println!("uploaded {} as {}", design.file_name, design.name);

    // 3. The mesh verdict: the server checked the model while it arrived.
    let report = design.mesh_report.unwrap_or_default();
    let verdict = pb::Verdict::try_from(report.verdict).unwrap_or(pb::Verdict::Unspecified);
    let extent = report.extent_mm.unwrap_or_default();
    println!(
        "mesh verdict: {} ({} triangles, {:.1} x {:.1} x {:.1} mm)",
        word(verdict.as_str_name()),
        report.triangles,
        extent.x,
        extent.y,
        extent.z
    );
    for f in &report.findings {
        let severity = pb::Severity::try_from(f.severity).unwrap_or(pb::Severity::Unspecified);
        println!(
            "  {} {}: {}",
            word(severity.as_str_name()),
            f.code,
            f.message
        );
    }
    if verdict == pb::Verdict::NotPrintable {
        return Err("the model is not printable; fix it (or try RepairDesign) first".into());
    }

    // 4. Quote: the best printers for this design and customer, each with its reasons.
    let spec = pb::JobSpec {
        design: design.name.clone(),
        technology: pb::Technology::Fdm as i32,
        material: args.material.map(|kind| pb::Material {
            kind,
            colour: String::new(), // any colour
        }),
        customer_location: Some(pb::GeoPoint {
            lat_deg: args.lat,
            lon_deg: args.lon,
        }),
        quantity: 1,
        ..Default::default()
    };
    let quote = jobs
        .quote_job(pb::QuoteJobRequest {
            spec: Some(spec.clone()),
            max_options: 3,
        })
        .await
        .map_err(rpc_error("QuoteJob"))?
        .into_inner();
    let Some(best) = quote.options.first() else {
        for r in &quote.rejections {
            println!("  rejected {} [{}]: {}", r.printer, r.code, r.message);
        }
        return Err("no printer can take this job".into());
    };
    let price = best.price.clone().unwrap_or_default();
    println!(
        "best option: {} at {}: {:.1} km, {:.2} {}, ready in {}",
        best.printer,
        best.makerspace,
        best.distance_km,
        price.amount_minor as f64 / 100.0,
        price.currency,
        minutes(best.eta_s)
    );
    for reason in &best.reasons {
        println!("  why: {reason}");
    }

    // 5. Submit on the quoted printer. The idempotency key makes a retry (after a timeout, say)
    //    return the same job instead of printing twice: keep it until you have the answer.
    let key = uuid::Uuid::now_v7().to_string();
    let submitted = jobs
        .submit_job(pb::SubmitJobRequest {
            spec: Some(spec),
            printer: best.printer.clone(),
            idempotency_key: key.clone(),
        })
        .await
        .map_err(rpc_error("SubmitJob"))?
        .into_inner();
    let Some(job) = submitted.jobs.first() else {
        return Err("SubmitJob returned no job".into());
    };
    println!("submitted {} (idempotency key {key})", job.name);

    // 6. Watch: a server stream replaying the job's history, then live events until it ends.
    let mut events = jobs
        .watch_job(pb::WatchJobRequest {
            name: job.name.clone(),
            from_sequence: 0, // 0 = from the beginning
        })
        .await
        .map_err(rpc_error("WatchJob"))?
        .into_inner();
    let mut state = pb::JobState::Unspecified;
    while let Some(event) = events.message().await.map_err(rpc_error("WatchJob"))? {
        let kind = pb::JobEventKind::try_from(event.kind).map_or("unknown", |k| k.as_str_name());
        let line = format!(
            "event #{} {} ({}, {:.0}%) {}",
            event.sequence,
            word(kind),
            state_word(event.state),
            event.progress_fraction * 100.0,
            event.message
        );
        println!("{}", line.trim_end());
        state = pb::JobState::try_from(event.state).unwrap_or(pb::JobState::Unspecified);
        if matches!(
            state,
            pb::JobState::Completed | pb::JobState::Failed | pb::JobState::Cancelled
        ) {
            println!("job {} {}", job.name, state_word(event.state));
            return Ok(state == pb::JobState::Completed);
        }
    }
    Err(format!(
        "the watch ended while the job was still {}; follow it with `fab jobs watch {}`",
        state_word(state as i32),
        job.name
    ))
}
