//! Between the API's messages and the router core's types: the one place where `pb` meets
//! `fabrouter_router::model`. The stored form of a job, its events and a printer is the API's
//! message ([`ProstCodec`]), so what a client reads and what the store holds never drift.

use fabrouter_api::names;
use fabrouter_api::v1 as pb;
use fabrouter_router::model::{
    EventKind, Job, JobEvent, JobSpec, JobState, LatLon, Material, Money, Placement,
    PlacementEstimate, PriceModel, Printer, PrinterSpec, PrinterState, Quote, Rotation, Score,
};
use fabrouter_router::protocol::{Assignment, Command, Hello, JobResult, Phase, Progress, Report};
use fabrouter_router::{Codec, DesignFormat};
use fabrouter_scheduler as sched;
use prost::Message;

use crate::designs::timestamp;

fn ms(t: Option<prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// A timestamp, or none for 0 (never).
fn opt_timestamp(unix_ms: i64) -> Option<prost_types::Timestamp> {
    (unix_ms != 0).then(|| timestamp(unix_ms))
}

fn bare<'a>(name: &'a str, collection: &str) -> &'a str {
    names::parse(name, collection).unwrap_or(name)
}

pub fn job_state(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Assigned => pb::JobState::Assigned,
        JobState::Preparing => pb::JobState::Preparing,
        JobState::Printing => pb::JobState::Printing,
        JobState::Paused => pb::JobState::Paused,
        JobState::Completed => pb::JobState::Completed,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn job_state_from(s: i32) -> Result<JobState, String> {
    Ok(match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => JobState::Queued,
        Ok(pb::JobState::Assigned) => JobState::Assigned,
        Ok(pb::JobState::Preparing) => JobState::Preparing,
        Ok(pb::JobState::Printing) => JobState::Printing,
        Ok(pb::JobState::Paused) => JobState::Paused,
        Ok(pb::JobState::Completed) => JobState::Completed,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Ok(pb::JobState::Cancelled) => JobState::Cancelled,
        _ => return Err(format!("unknown job state {s}")),
    })
}

fn event_kind(k: EventKind) -> pb::JobEventKind {
    match k {
        EventKind::Created => pb::JobEventKind::Created,
        EventKind::Assigned => pb::JobEventKind::Assigned,
        EventKind::Preparing => pb::JobEventKind::Preparing,
        EventKind::Started => pb::JobEventKind::Started,
        EventKind::Progress => pb::JobEventKind::Progress,
        EventKind::Completed => pb::JobEventKind::Completed,
        EventKind::Failed => pb::JobEventKind::Failed,
        EventKind::Cancelled => pb::JobEventKind::Cancelled,
        EventKind::Rerouted => pb::JobEventKind::Rerouted,
        EventKind::Paused => pb::JobEventKind::Paused,
        EventKind::Resumed => pb::JobEventKind::Resumed,
    }
}

fn event_kind_from(k: i32) -> Option<EventKind> {
    Some(match pb::JobEventKind::try_from(k).ok()? {
        pb::JobEventKind::Unspecified => return None,
        pb::JobEventKind::Created => EventKind::Created,
        pb::JobEventKind::Assigned => EventKind::Assigned,
        pb::JobEventKind::Preparing => EventKind::Preparing,
        pb::JobEventKind::Started => EventKind::Started,
        pb::JobEventKind::Progress => EventKind::Progress,
        pb::JobEventKind::Completed => EventKind::Completed,
        pb::JobEventKind::Failed => EventKind::Failed,
        pb::JobEventKind::Cancelled => EventKind::Cancelled,
        pb::JobEventKind::Rerouted => EventKind::Rerouted,
        pb::JobEventKind::Paused => EventKind::Paused,
        pb::JobEventKind::Resumed => EventKind::Resumed,
    })
}

fn technology(t: Option<sched::Technology>) -> i32 {
    (match t {
        None => pb::Technology::Unspecified,
        Some(sched::Technology::Fdm) => pb::Technology::Fdm,
        Some(sched::Technology::Resin) => pb::Technology::Resin,
        Some(sched::Technology::Sls) => pb::Technology::Sls,
    }) as i32
}

fn technology_from(t: i32) -> Option<sched::Technology> {
    match pb::Technology::try_from(t) {
        Ok(pb::Technology::Fdm) => Some(sched::Technology::Fdm),
        Ok(pb::Technology::Resin) => Some(sched::Technology::Resin),
        Ok(pb::Technology::Sls) => Some(sched::Technology::Sls),
        _ => None,
    }
}

fn material(m: &Material) -> pb::Material {
    pb::Material {
        kind: m.kind.clone(),
        colour: m.colour.clone(),
    }
}

fn material_from(m: pb::Material) -> Material {
    Material {
        kind: m.kind,
        colour: m.colour,
    }
}

fn rotation(r: Rotation) -> pb::Rotation {
    pb::Rotation {
        x_deg: r.x_deg,
        y_deg: r.y_deg,
        z_deg: r.z_deg,
    }
}

fn rotation_from(r: pb::Rotation) -> Rotation {
    Rotation {
        x_deg: r.x_deg,
        y_deg: r.y_deg,
        z_deg: r.z_deg,
    }
}

fn point(p: LatLon) -> pb::GeoPoint {
    pb::GeoPoint {
        lat_deg: p.lat_deg,
        lon_deg: p.lon_deg,
    }
}

fn point_from(p: pb::GeoPoint) -> LatLon {
    LatLon {
        lat_deg: p.lat_deg,
        lon_deg: p.lon_deg,
    }
}

pub fn spec(s: &JobSpec) -> pb::JobSpec {
    pb::JobSpec {
        design: s.design.clone(),
        technology: technology(s.technology),
        material: s.material.as_ref().map(material),
        nozzle_mm: s.nozzle_mm,
        customer_location: s.customer_location.map(point),
        max_distance_km: s.max_distance_km,
        quantity: s.quantity,
    }
}

pub fn spec_from(s: pb::JobSpec) -> JobSpec {
    JobSpec {
        design: s.design,
        technology: technology_from(s.technology),
        material: s.material.map(material_from),
        nozzle_mm: s.nozzle_mm,
        customer_location: s.customer_location.map(point_from),
        max_distance_km: s.max_distance_km,
        quantity: s.quantity,
    }
}

pub fn placement(p: &Placement) -> pb::QuoteOption {
    pb::QuoteOption {
        printer: p.printer.clone(),
        makerspace: p.makerspace.clone(),
        distance_km: p.distance_km,
        price: p.price.as_ref().map(|m| pb::Money {
            currency: m.currency.clone(),
            amount_minor: m.amount_minor,
        }),
        eta_s: p.eta_s,
        estimate: p.estimate.as_ref().map(|e| pb::Estimate {
            design: e.design.clone(),
            profile: e.profile.clone(),
            print_time_s: e.print_time_s,
            filament_g: e.filament_g,
            ..Default::default()
        }),
        reasons: p.reasons.clone(),
        scores: p
            .scores
            .iter()
            .map(|s| pb::ScoreContribution {
                score: s.score.clone(),
                value: s.value,
                weight: s.weight,
            })
            .collect(),
        total_score: p.total_score,
        orientation: p.orientation.clone(),
        rotation: p.rotation.map(rotation),
    }
}

fn placement_from(p: pb::QuoteOption) -> Placement {
    Placement {
        printer: p.printer,
        makerspace: p.makerspace,
        distance_km: p.distance_km,
        price: p.price.map(|m| Money {
            currency: m.currency,
            amount_minor: m.amount_minor,
        }),
        eta_s: p.eta_s,
        estimate: p.estimate.map(|e| PlacementEstimate {
            design: e.design,
            profile: e.profile,
            print_time_s: e.print_time_s,
            filament_g: e.filament_g,
        }),
        reasons: p.reasons,
        scores: p
            .scores
            .into_iter()
            .map(|s| Score {
                score: s.score,
                value: s.value,
                weight: s.weight,
            })
            .collect(),
        total_score: p.total_score,
        orientation: p.orientation,
        rotation: p.rotation.map(rotation_from),
    }
}

pub fn job(j: &Job) -> pb::Job {
    pb::Job {
        name: names::job(&j.id),
        design: names::design(&j.design),
        owner: format!("principals/{}", j.owner),
        state: job_state(j.state) as i32,
        printer: j.printer.clone(),
        epoch: j.epoch,
        coarse_geohash: j.coarse_geohash.clone(),
        progress_fraction: j.progress,
        create_time: Some(timestamp(j.created_ms)),
        update_time: Some(timestamp(j.updated_ms)),
        placement: j.placement.as_ref().map(placement),
        failure_reason: j.failure_reason.clone(),
        reroutes: j.reroutes,
        spec: Some(spec(&j.spec)),
        failed_printers: j.failed_printers.clone(),
        last_report_time: opt_timestamp(j.last_report_ms),
    }
}

pub fn job_from(j: pb::Job) -> Result<Job, String> {
    Ok(Job {
        id: bare(&j.name, "jobs").to_string(),
        design: bare(&j.design, "designs").to_string(),
        owner: j
            .owner
            .strip_prefix("principals/")
            .unwrap_or(&j.owner)
            .to_string(),
        state: job_state_from(j.state)?,
        printer: j.printer,
        epoch: j.epoch,
        coarse_geohash: j.coarse_geohash,
        progress: j.progress_fraction,
        created_ms: ms(j.create_time),
        updated_ms: ms(j.update_time),
        placement: j.placement.map(placement_from),
        failure_reason: j.failure_reason,
        reroutes: j.reroutes,
        spec: spec_from(j.spec.unwrap_or_default()),
        failed_printers: j.failed_printers,
        last_report_ms: ms(j.last_report_time),
    })
}

pub fn event(e: &JobEvent) -> pb::JobEvent {
    pb::JobEvent {
        job: names::job(&e.job),
        sequence: e.sequence,
        kind: e.kind.map_or(0, |k| event_kind(k) as i32),
        state: job_state(e.state) as i32,
        time: Some(timestamp(e.time_ms)),
        printer: e.printer.clone(),
        epoch: e.epoch,
        message: e.message.clone(),
        progress_fraction: e.progress,
        layer: e.layer,
        remaining_s: e.remaining_s,
    }
}

pub fn event_from(e: pb::JobEvent) -> Result<JobEvent, String> {
    Ok(JobEvent {
        job: bare(&e.job, "jobs").to_string(),
        sequence: e.sequence,
        kind: event_kind_from(e.kind),
        state: job_state_from(e.state)?,
        time_ms: ms(e.time),
        printer: e.printer,
        epoch: e.epoch,
        message: e.message,
        progress: e.progress_fraction,
        layer: e.layer,
        remaining_s: e.remaining_s,
    })
}

pub fn printer_state(s: PrinterState) -> pb::PrinterState {
    match s {
        PrinterState::Idle => pb::PrinterState::Idle,
        PrinterState::Printing => pb::PrinterState::Printing,
        PrinterState::Paused => pb::PrinterState::Paused,
        PrinterState::Offline => pb::PrinterState::Offline,
        PrinterState::Maintenance => pb::PrinterState::Maintenance,
    }
}

fn printer_state_from(s: i32) -> PrinterState {
    match pb::PrinterState::try_from(s) {
        Ok(pb::PrinterState::Printing) => PrinterState::Printing,
        Ok(pb::PrinterState::Paused) => PrinterState::Paused,
        Ok(pb::PrinterState::Offline) => PrinterState::Offline,
        Ok(pb::PrinterState::Maintenance) => PrinterState::Maintenance,
        _ => PrinterState::Idle,
    }
}

pub fn printer_spec(s: &PrinterSpec) -> pb::PrinterSpec {
    pb::PrinterSpec {
        printer_id: s.printer_id.clone(),
        technology: technology(s.technology),
        build_x_mm: s.build_mm[0],
        build_y_mm: s.build_mm[1],
        build_z_mm: s.build_mm[2],
        nozzle_diameters_mm: s.nozzle_diameters_mm.clone(),
        materials: s.materials.iter().map(material).collect(),
        profiles: s.profiles.clone(),
        location: s.location.map(point),
        price: s.price.as_ref().map(|p| pb::PriceModel {
            currency: p.currency.clone(),
            per_hour_minor: p.per_hour_minor,
            per_gram_minor: p.per_gram_minor,
            setup_fee_minor: p.setup_fee_minor,
        }),
        makerspace: s.makerspace.clone(),
        firmware_flavor: s.firmware_flavor.clone(),
        // The router keeps the profile it resolved (in `profiles`), not the config text.
        slicer_config: None,
    }
}

pub fn printer_spec_from(s: pb::PrinterSpec) -> PrinterSpec {
    PrinterSpec {
        printer_id: s.printer_id,
        technology: technology_from(s.technology),
        build_mm: [s.build_x_mm, s.build_y_mm, s.build_z_mm],
        nozzle_diameters_mm: s.nozzle_diameters_mm,
        materials: s.materials.into_iter().map(material_from).collect(),
        profiles: s.profiles,
        location: s.location.map(point_from),
        price: s.price.map(|p| PriceModel {
            currency: p.currency,
            per_hour_minor: p.per_hour_minor,
            per_gram_minor: p.per_gram_minor,
            setup_fee_minor: p.setup_fee_minor,
        }),
        makerspace: s.makerspace,
        firmware_flavor: s.firmware_flavor,
    }
}

pub fn printer(p: &Printer) -> pb::Printer {
    pb::Printer {
        name: p.name.clone(),
        spec: Some(printer_spec(&p.spec)),
        state: printer_state(p.state) as i32,
        last_seen_time: Some(timestamp(p.last_seen_ms)),
        queued_work_s: p.queued_work_s,
        active_jobs: p.active_jobs,
    }
}

fn printer_from(p: pb::Printer) -> Printer {
    Printer {
        name: p.name,
        spec: printer_spec_from(p.spec.unwrap_or_default()),
        state: printer_state_from(p.state),
        last_seen_ms: ms(p.last_seen_time),
        queued_work_s: p.queued_work_s,
        active_jobs: p.active_jobs,
    }
}

pub fn quote(q: Quote) -> pb::Quote {
    pb::Quote {
        options: q.options.iter().map(placement).collect(),
        rejections: q
            .rejections
            .into_iter()
            .map(|r| pb::Rejection {
                printer: r.printer,
                code: r.code,
                message: r.message,
            })
            .collect(),
        coarse_geohash: q.coarse_geohash,
        printers_registered: q.printers_registered,
        printers_online: q.printers_online,
        printers_rejected: q.printers_rejected,
    }
}

pub fn hello_from(h: pb::NodeHello) -> Hello {
    Hello {
        printers: h.printers.into_iter().map(printer_spec_from).collect(),
        held: h.held_jobs.into_iter().map(|j| (j.job, j.epoch)).collect(),
    }
}

/// The phase word of `JobProgress` (see the proto): any word it does not name counts as
/// printing.
fn phase(word: &str) -> Phase {
    match word {
        "downloading" | "slicing" | "heating" | "preparing" => Phase::Preparing,
        "paused" => Phase::Paused,
        _ => Phase::Printing,
    }
}

/// A node's report after its hello; `None` for a second hello (nothing to act on).
pub fn report_from(m: pb::node_message::Msg) -> Option<Report> {
    use pb::node_message::Msg;
    Some(match m {
        Msg::Hello(_) => return None,
        Msg::Heartbeat(_) => Report::Heartbeat,
        Msg::PrinterStatus(s) => Report::PrinterStatus {
            printer_id: s.printer_id,
            state: printer_state_from(s.state),
        },
        Msg::Ack(a) => Report::Ack {
            job: a.job,
            epoch: a.epoch,
            accepted: a.accepted,
            reason: a.reason,
        },
        Msg::Progress(p) => Report::Progress(Progress {
            phase: phase(&p.phase),
            job: p.job,
            epoch: p.epoch,
            fraction: p.fraction,
            layer: p.layer,
            layers_total: p.layers_total,
            remaining_s: p.remaining_s,
            phase_word: p.phase,
        }),
        Msg::Result(r) => Report::Result(JobResult {
            job: r.job,
            epoch: r.epoch,
            success: r.success,
            reason: r.reason,
            printer_fault: r.printer_fault,
        }),
    })
}

fn assignment(a: Assignment) -> pb::JobAssignment {
    pb::JobAssignment {
        job: names::job(&a.job),
        epoch: a.epoch,
        printer_id: a.printer_id,
        design: names::design(&a.design),
        format: match a.format {
            DesignFormat::Stl => pb::DesignFormat::Stl,
            DesignFormat::Gcode => pb::DesignFormat::Gcode,
        } as i32,
        profile: a.profile,
        design_sha256: a.design_sha256,
        material: a.material.as_ref().map(material),
        rotation: a.rotation.map(rotation),
    }
}

pub fn command(c: Command) -> pb::RouterMessage {
    use pb::router_message::Msg;
    let msg = match c {
        Command::Welcome {
            node_id,
            lease_s,
            heartbeat_interval_s,
        } => Msg::Welcome(pb::Welcome {
            node_id,
            lease_s,
            heartbeat_interval_s,
        }),
        Command::Assign(a) => Msg::Assignment(assignment(a)),
        Command::Cancel { job, epoch, reason } => Msg::Cancel(pb::JobCancel {
            job: names::job(&job),
            epoch,
            reason,
        }),
        Command::Pause { job, epoch } => Msg::Pause(pb::JobPause {
            job: names::job(&job),
            epoch,
        }),
        Command::Resume { job, epoch } => Msg::Resume(pb::JobResume {
            job: names::job(&job),
            epoch,
        }),
        Command::ResultAck { job, epoch } => Msg::ResultAck(pb::ResultAck {
            job: names::job(&job),
            epoch,
        }),
        Command::Fenced {
            job_name,
            epoch,
            reason,
        } => Msg::Fenced(pb::Fenced {
            job: job_name,
            epoch,
            reason,
        }),
    };
    pb::RouterMessage { msg: Some(msg) }
}

/// Stores the core's records as the API's messages.
pub struct ProstCodec;

impl Codec for ProstCodec {
    fn encode_job(&self, j: &Job) -> Vec<u8> {
        job(j).encode_to_vec()
    }

    fn decode_job(&self, bytes: &[u8]) -> Result<Job, String> {
        job_from(pb::Job::decode(bytes).map_err(|e| e.to_string())?)
    }

    fn encode_event(&self, e: &JobEvent) -> Vec<u8> {
        event(e).encode_to_vec()
    }

    fn decode_event(&self, bytes: &[u8]) -> Result<JobEvent, String> {
        event_from(pb::JobEvent::decode(bytes).map_err(|e| e.to_string())?)
    }

    fn encode_printer(&self, p: &Printer) -> Vec<u8> {
        printer(p).encode_to_vec()
    }

    fn decode_printer(&self, bytes: &[u8]) -> Result<Printer, String> {
        Ok(printer_from(
            pb::Printer::decode(bytes).map_err(|e| e.to_string())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_job() -> Job {
        Job {
            id: "0190a".into(),
            design: "d1".into(),
            owner: "alice".into(),
            state: JobState::Paused,
            printer: "nodes/n/printers/p".into(),
            epoch: 3,
            coarse_geohash: "u33db".into(),
            progress: 0.5,
            created_ms: 1_700_000_000_123,
            updated_ms: 1_700_000_001_456,
            placement: Some(Placement {
                printer: "nodes/n/printers/p".into(),
                makerspace: "Lab".into(),
                distance_km: 1.5,
                price: Some(Money::of(12.34, "EUR")),
                eta_s: 100.0,
                estimate: Some(PlacementEstimate {
                    design: "designs/d1".into(),
                    profile: "prusaslicer-b".into(),
                    print_time_s: 99.0,
                    filament_g: 3.0,
                }),
                reasons: vec!["nearest".into()],
                scores: vec![Score {
                    score: "distance".into(),
                    value: 0.5,
                    weight: 0.0,
                }],
                total_score: 0.7,
                orientation: "as uploaded".into(),
                rotation: Some(Rotation {
                    x_deg: 90.0,
                    y_deg: 0.0,
                    z_deg: 45.0,
                }),
            }),
            failure_reason: String::new(),
            reroutes: 1,
            spec: JobSpec {
                design: "designs/d1".into(),
                technology: Some(sched::Technology::Fdm),
                material: Some(Material {
                    kind: "PLA".into(),
                    colour: "black".into(),
                }),
                nozzle_mm: 0.4,
                customer_location: None,
                max_distance_km: 20.0,
                quantity: 2,
            },
            failed_printers: vec!["nodes/m/printers/q".into()],
            last_report_ms: 1_700_000_001_000,
        }
    }

    #[test]
    fn a_job_survives_the_store_round_trip_field_for_field() {
        let j = full_job();
        let back = ProstCodec.decode_job(&ProstCodec.encode_job(&j)).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn every_state_and_event_kind_has_its_api_value_and_back() {
        for s in JobState::ALL {
            assert_eq!(job_state_from(job_state(s) as i32), Ok(s));
        }
        let e = JobEvent {
            job: "j".into(),
            sequence: 4,
            kind: Some(EventKind::Preparing),
            state: JobState::Preparing,
            time_ms: 5,
            printer: "p".into(),
            epoch: 2,
            message: "slicing".into(),
            progress: 0.25,
            layer: 3,
            remaining_s: 7.5,
        };
        assert_eq!(
            ProstCodec
                .decode_event(&ProstCodec.encode_event(&e))
                .unwrap(),
            e
        );
    }

    #[test]
    fn preparing_words_are_preparing_and_unknown_words_printing() {
        for w in ["downloading", "slicing", "heating"] {
            assert_eq!(phase(w), Phase::Preparing);
        }
        assert_eq!(phase("paused"), Phase::Paused);
        assert_eq!(phase("printing"), Phase::Printing);
        assert_eq!(phase("extruding"), Phase::Printing);
    }
}
