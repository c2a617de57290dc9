//! `fab jobs` and `fab printers`: quotes with their reasons, submissions, and following a job.

use clap::{Args, Subcommand};
use fabrouter_api::v1 as pb;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::client::Client;

#[derive(Args, Clone)]
pub struct SpecArgs {
    /// The design, e.g. designs/0192...
    pub design: String,
    /// Your latitude (used for routing; the router keeps only a ~1 km cell).
    #[arg(long, allow_hyphen_values = true)]
    pub lat: f64,
    /// Your longitude.
    #[arg(long, allow_hyphen_values = true)]
    pub lon: f64,
    /// fdm, resin or sls.
    #[arg(long, default_value = "fdm")]
    pub technology: String,
    /// Required material, e.g. PLA.
    #[arg(long)]
    pub material: Option<String>,
    /// Required colour.
    #[arg(long)]
    pub colour: Option<String>,
    /// Required nozzle diameter, mm.
    #[arg(long)]
    pub nozzle_mm: Option<f64>,
    /// Farthest acceptable printer, km.
    #[arg(long)]
    pub max_distance_km: Option<f64>,
    /// Copies.
    #[arg(long, default_value_t = 1)]
    pub quantity: u32,
}

impl SpecArgs {
    pub fn to_pb(&self) -> anyhow::Result<pb::JobSpec> {
        let technology = match self.technology.to_ascii_lowercase().as_str() {
            "fdm" => pb::Technology::Fdm,
            "resin" => pb::Technology::Resin,
            "sls" => pb::Technology::Sls,
            other => anyhow::bail!("unknown technology {other:?}: use fdm, resin or sls"),
        };
        Ok(pb::JobSpec {
            design: self.design.clone(),
            technology: technology as i32,
            material: self.material.as_ref().map(|kind| pb::Material {
                kind: kind.clone(),
                colour: self.colour.clone().unwrap_or_default(),
            }),
            nozzle_mm: self.nozzle_mm.unwrap_or(0.0),
            customer_location: Some(pb::GeoPoint {
                lat_deg: self.lat,
                lon_deg: self.lon,
            }),
            max_distance_km: self.max_distance_km.unwrap_or(0.0),
            quantity: self.quantity,
        })
    }
}

#[derive(Subcommand)]
pub enum JobsAction {
    /// Show the best printers for a design, with price, distance, ETA and why.
    Quote {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, default_value_t = 3)]
        options: u32,
        /// Also list every printer that was rejected and why.
        #[arg(long)]
        rejections: bool,
    },
    /// Order a print. Retrying with the same --key never prints twice.
    Submit {
        #[command(flatten)]
        spec: SpecArgs,
        /// A printer from the quote; default: the router picks.
        #[arg(long)]
        printer: Option<String>,
        /// Idempotency key; default: a new random one.
        #[arg(long)]
        key: Option<String>,
        /// Follow the job until it ends.
        #[arg(long)]
        watch: bool,
    },
    Get {
        name: String,
    },
    List,
    /// Follow a job's events until it ends.
    Watch {
        name: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    Cancel {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Pause a printing job (its printer parks the head and waits).
    Pause {
        name: String,
    },
    /// Resume a paused job.
    Resume {
        name: String,
    },
}

fn word(s: &str, prefix: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase()
}

fn state_word(s: i32) -> String {
    word(
        pb::JobState::try_from(s)
            .unwrap_or(pb::JobState::Unspecified)
            .as_str_name(),
        "JOB_STATE_",
    )
}

pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub fn money(m: &Option<pb::Money>) -> String {
    m.as_ref()
        .map(|m| format!("{:.2} {}", m.amount_minor as f64 / 100.0, m.currency))
        .unwrap_or_default()
}

pub fn option_json(o: &pb::QuoteOption) -> Value {
    let e = o.estimate.clone().unwrap_or_default();
    json!({
        "printer": o.printer,
        "makerspace": o.makerspace,
        "distance_km": o.distance_km,
        "price": o.price.as_ref().map(|m| json!({"currency": m.currency, "amount": m.amount_minor as f64 / 100.0})),
        "eta_s": o.eta_s,
        "print_time_s": e.print_time_s,
        "filament_g": e.filament_g,
        "profile": e.profile,
        "orientation": o.orientation,
        "score": o.total_score,
        "reasons": o.reasons,
    })
}

pub fn option_text(i: usize, o: &pb::QuoteOption) -> String {
    let e = o.estimate.clone().unwrap_or_default();
    let mut s = format!(
        "{}. {} at {} — {:.1} km, {}, print {} ({:.1} g, {}), ready in {}\n",
        i + 1,
        o.printer,
        o.makerspace,
        o.distance_km,
        money(&o.price),
        duration(e.print_time_s),
        e.filament_g,
        e.profile,
        duration(o.eta_s),
    );
    if !o.orientation.is_empty() {
        s.push_str(&format!("   placed {}\n", o.orientation));
    }
    for r in &o.reasons {
        s.push_str(&format!("   why: {r}\n"));
    }
    s
}

pub fn job_json(j: &pb::Job) -> Value {
    json!({
        "name": j.name,
        "design": j.design,
        "state": state_word(j.state),
        "printer": j.printer,
        "epoch": j.epoch,
        "progress": j.progress_fraction,
        "reroutes": j.reroutes,
        "coarse_geohash": j.coarse_geohash,
        "failure_reason": j.failure_reason,
        "placement": j.placement.as_ref().map(option_json),
    })
}

pub fn job_line(j: &pb::Job) -> String {
    format!(
        "{}  {}  {}  {:.0}%{}",
        j.name,
        state_word(j.state),
        if j.printer.is_empty() {
            "-"
        } else {
            &j.printer
        },
        j.progress_fraction * 100.0,
        if j.failure_reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", j.failure_reason)
        }
    )
}

pub fn event_json(e: &pb::JobEvent) -> Value {
    json!({
        "job": e.job,
        "sequence": e.sequence,
        "kind": word(pb::JobEventKind::try_from(e.kind).unwrap_or(pb::JobEventKind::Unspecified).as_str_name(), "JOB_EVENT_KIND_"),
        "state": state_word(e.state),
        "printer": e.printer,
        "epoch": e.epoch,
        "message": e.message,
        "progress": e.progress_fraction,
    })
}

/// Follows a job until it ends; returns the final event's state.
pub async fn watch(client: &Client, name: &str, from: u64, json_out: bool) -> anyhow::Result<i32> {
    let mut stream = client
        .jobs()
        .watch_job(pb::WatchJobRequest {
            name: name.to_string(),
            from_sequence: from,
        })
        .await?
        .into_inner();
    let mut last = 0;
    while let Some(e) = stream.next().await {
        let e = e?;
        last = e.state;
        if json_out {
            println!("{}", event_json(&e));
        } else {
            println!(
                "#{:<3} {:<9} {:<10} {}",
                e.sequence,
                word(
                    pb::JobEventKind::try_from(e.kind)
                        .unwrap_or(pb::JobEventKind::Unspecified)
                        .as_str_name(),
                    "JOB_EVENT_KIND_"
                ),
                state_word(e.state),
                e.message
            );
        }
    }
    Ok(last)
}

/// Why a quote has no option, from the fleet counts it carries.
fn no_option_text(q: &pb::Quote) -> String {
    let offline = q.printers_registered.saturating_sub(q.printers_online);
    match (q.printers_registered, q.printers_online) {
        (0, _) => "no printer can take this job: no printer is registered with this router \
                   (a makerspace joins with `fab admin node create` and `fab-node run`)"
            .to_string(),
        (n, 0) => format!(
            "no printer can take this job: {} registered, all offline or in maintenance",
            count_printers(n)
        ),
        (n, _) => format!(
            "no printer can take this job: {} registered, {offline} offline or in maintenance, {} rejected{}",
            count_printers(n),
            q.printers_rejected,
            if q.rejections.is_empty() { "" } else { ":" }
        ),
    }
}

fn count_printers(n: u32) -> String {
    if n == 1 {
        "1 printer".to_string()
    } else {
        format!("{n} printers")
    }
}

pub async fn run(client: &Client, action: JobsAction, json_out: bool) -> anyhow::Result<()> {
    let mut c = client.jobs();
    match action {
        JobsAction::Quote {
            spec,
            options,
            rejections,
        } => {
            let q = c
                .quote_job(pb::QuoteJobRequest {
                    spec: Some(spec.to_pb()?),
                    max_options: options,
                })
                .await?
                .into_inner();
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "options": q.options.iter().map(option_json).collect::<Vec<_>>(),
                        "rejections": q.rejections.iter().map(|r| json!({"printer": r.printer, "code": r.code, "message": r.message})).collect::<Vec<_>>(),
                        "coarse_geohash": q.coarse_geohash,
                        "printers_registered": q.printers_registered,
                        "printers_online": q.printers_online,
                        "printers_rejected": q.printers_rejected,
                    }))?
                );
            } else {
                if q.options.is_empty() {
                    println!("{}", no_option_text(&q));
                }
                for (i, o) in q.options.iter().enumerate() {
                    print!("{}", option_text(i, o));
                }
                if rejections || q.options.is_empty() {
                    for r in &q.rejections {
                        println!("  {} [{}]: {}", r.printer, r.code, r.message);
                    }
                } else if !q.rejections.is_empty() {
                    println!(
                        "({} other printers rejected or ranked lower; --rejections lists why)",
                        q.rejections.len()
                    );
                }
            }
        }
        JobsAction::Submit {
            spec,
            printer,
            key,
            watch: follow,
        } => {
            let key = key.unwrap_or_else(|| {
                use sha2::Digest;
                let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
                hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..16])
            });
            let r = c
                .submit_job(pb::SubmitJobRequest {
                    spec: Some(spec.to_pb()?),
                    printer: printer.unwrap_or_default(),
                    idempotency_key: key.clone(),
                })
                .await?
                .into_inner();
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "idempotency_key": key,
                        "replayed": r.replayed,
                        "jobs": r.jobs.iter().map(job_json).collect::<Vec<_>>(),
                    }))?
                );
            } else {
                for j in &r.jobs {
                    println!("{}", job_line(j));
                    if let Some(p) = &j.placement {
                        print!("{}", option_text(0, p));
                    }
                }
                if r.replayed {
                    println!("(this key was used before: these are the original jobs)");
                }
            }
            if follow {
                for j in &r.jobs {
                    watch(client, &j.name, 0, json_out).await?;
                }
            }
        }
        JobsAction::Get { name } => {
            let j = c.get_job(pb::GetJobRequest { name }).await?.into_inner();
            if json_out {
                println!("{}", serde_json::to_string_pretty(&job_json(&j))?);
            } else {
                println!("{}", job_line(&j));
            }
        }
        JobsAction::List => {
            let r = c
                .list_jobs(pb::ListJobsRequest::default())
                .await?
                .into_inner();
            for j in &r.jobs {
                if json_out {
                    println!("{}", job_json(j));
                } else {
                    println!("{}", job_line(j));
                }
            }
        }
        JobsAction::Watch { name, from } => {
            watch(client, &name, from, json_out).await?;
        }
        JobsAction::Cancel { name, reason } => {
            let j = c.cancel_job(pb::CancelJobRequest { name, reason }).await?;
            print_job(&j.into_inner(), json_out);
        }
        JobsAction::Pause { name } => {
            let j = c.pause_job(pb::PauseJobRequest { name }).await?;
            print_job(&j.into_inner(), json_out);
        }
        JobsAction::Resume { name } => {
            let j = c.resume_job(pb::ResumeJobRequest { name }).await?;
            print_job(&j.into_inner(), json_out);
        }
    }
    Ok(())
}

fn print_job(j: &pb::Job, json_out: bool) {
    if json_out {
        println!("{}", job_json(j));
    } else {
        println!("{}", job_line(j));
    }
}

pub async fn printers(client: &Client, json_out: bool) -> anyhow::Result<()> {
    let r = client
        .nodes()
        .list_printers(pb::ListPrintersRequest::default())
        .await?
        .into_inner();
    for p in &r.printers {
        let spec = p.spec.clone().unwrap_or_default();
        let state = word(
            pb::PrinterState::try_from(p.state)
                .unwrap_or(pb::PrinterState::Unspecified)
                .as_str_name(),
            "PRINTER_STATE_",
        );
        if json_out {
            println!(
                "{}",
                json!({"name": p.name, "makerspace": spec.makerspace, "state": state, "active_jobs": p.active_jobs, "queued_work_s": p.queued_work_s, "profiles": spec.profiles})
            );
        } else {
            println!(
                "{}  {}  {}  {} job(s), {} queued",
                p.name,
                spec.makerspace,
                state,
                p.active_jobs,
                duration(p.queued_work_s)
            );
        }
    }
    Ok(())
}
