//! Bounds on every text and list a client or node sends that the router keeps, echoes or works
//! through, in one place. gRPC messages are bounded as they are decoded ([`MAX_MESSAGE_BYTES`]:
//! tonic refuses a larger length prefix before reading the body); inside a message, each field
//! the router stores or shows is bounded here, so a 4 MiB label or a node declaring a million
//! printers is refused with the field named instead of being stored.
//!
//! Requests over a bound are refused (INVALID_ARGUMENT naming the field). On the node stream,
//! where nothing answers a single message, display texts over a bound (reasons, messages,
//! phases) are cut to it, and a message whose identifiers are over theirs is dropped.

use fabrouter_api::v1 as pb;
use pb::node_message::Msg;
use tonic::Status;

use crate::errors::bad_request;

/// Largest gRPC message fabd decodes, per message (an upload chunk, a node message, a request).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Identifiers: printer ids, resource names, job names in node messages.
pub const MAX_ID_BYTES: usize = 128;
/// Short free text: token and node labels, makerspace names, material kinds and colours,
/// profile names, firmware flavours, the agent version.
pub const MAX_LABEL_BYTES: usize = 256;
/// Reasons and messages: a cancel reason, a node's failure reason, a printer's status message.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Printers one node may declare in its hello.
pub const MAX_PRINTERS_PER_NODE: usize = 1000;
/// Jobs one node may say it holds in its hello.
pub const MAX_HELD_JOBS: usize = 10_000;
/// Materials, nozzles and profiles one printer may declare.
pub const MAX_PRINTER_LIST: usize = 64;

fn text(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(bad_request(
            field,
            format!(
                "{field} is {} bytes; at most {max} are accepted",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn list(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(bad_request(
            field,
            format!("{field} has {len} entries; at most {max} are accepted"),
        ));
    }
    Ok(())
}

fn material(field: &str, m: &pb::Material) -> Result<(), Status> {
    text(&format!("{field}.kind"), &m.kind, MAX_LABEL_BYTES)?;
    text(&format!("{field}.colour"), &m.colour, MAX_LABEL_BYTES)
}

/// A token or node label.
pub fn label(value: &str) -> Result<(), Status> {
    text("label", value, MAX_LABEL_BYTES)
}

/// A resource name a request looks up (`designs/…`, `jobs/…`, `nodes/…/printers/…`).
pub fn name(field: &str, value: &str) -> Result<(), Status> {
    text(field, value, MAX_ID_BYTES)
}

/// A cancel reason (kept in the job's events).
pub fn reason(value: &str) -> Result<(), Status> {
    text("reason", value, MAX_TEXT_BYTES)
}

/// The parts of a job spec the router keeps or shows.
pub fn job_spec(spec: Option<&pb::JobSpec>) -> Result<(), Status> {
    let Some(spec) = spec else { return Ok(()) };
    name("spec.design", &spec.design)?;
    if let Some(m) = &spec.material {
        material("spec.material", m)?;
    }
    Ok(())
}

/// A node's hello: how many printers and held jobs, and each printer's texts and lists.
pub fn node_hello(hello: &pb::NodeHello) -> Result<(), Status> {
    text("hello.agent_version", &hello.agent_version, MAX_LABEL_BYTES)?;
    list(
        "hello.printers",
        hello.printers.len(),
        MAX_PRINTERS_PER_NODE,
    )?;
    list("hello.held_jobs", hello.held_jobs.len(), MAX_HELD_JOBS)?;
    for p in &hello.printers {
        text("hello.printers.printer_id", &p.printer_id, MAX_ID_BYTES)?;
        text("hello.printers.makerspace", &p.makerspace, MAX_LABEL_BYTES)?;
        text(
            "hello.printers.firmware_flavor",
            &p.firmware_flavor,
            MAX_LABEL_BYTES,
        )?;
        list(
            "hello.printers.nozzle_diameters_mm",
            p.nozzle_diameters_mm.len(),
            MAX_PRINTER_LIST,
        )?;
        list(
            "hello.printers.materials",
            p.materials.len(),
            MAX_PRINTER_LIST,
        )?;
        list(
            "hello.printers.profiles",
            p.profiles.len(),
            MAX_PRINTER_LIST,
        )?;
        for m in &p.materials {
            material("hello.printers.materials", m)?;
        }
        for prof in &p.profiles {
            text("hello.printers.profiles", prof, MAX_LABEL_BYTES)?;
        }
        if let Some(price) = &p.price {
            text("hello.printers.price.currency", &price.currency, 8)?;
        }
        if let Some(cfg) = &p.slicer_config {
            text(
                "hello.printers.slicer_config.ini",
                &cfg.ini,
                crate::estimates::MAX_SLICER_INI_BYTES,
            )?;
            for (field, name) in [
                (
                    "hello.printers.slicer_config.printer_preset",
                    &cfg.printer_preset,
                ),
                (
                    "hello.printers.slicer_config.print_preset",
                    &cfg.print_preset,
                ),
                (
                    "hello.printers.slicer_config.filament_preset",
                    &cfg.filament_preset,
                ),
            ] {
                text(field, name, MAX_LABEL_BYTES)?;
            }
        }
    }
    for h in &hello.held_jobs {
        text("hello.held_jobs.job", &h.job, MAX_ID_BYTES)?;
        text("hello.held_jobs.printer_id", &h.printer_id, MAX_ID_BYTES)?;
    }
    Ok(())
}

/// Cuts `s` to at most `max` bytes, at a character boundary, marking the cut.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

/// Bounds a node message after the hello: display texts are cut to their bound; `Err` (why)
/// when an identifier is over its bound, and the message is to be dropped.
pub fn node_message(msg: &mut Msg) -> Result<(), String> {
    let ids: &[&str] = match msg {
        Msg::Hello(_) | Msg::Heartbeat(_) => &[],
        Msg::PrinterStatus(s) => {
            cut(&mut s.message, MAX_TEXT_BYTES);
            &[&s.printer_id]
        }
        Msg::Ack(a) => {
            cut(&mut a.reason, MAX_TEXT_BYTES);
            &[&a.job]
        }
        Msg::Progress(p) => {
            cut(&mut p.phase, MAX_LABEL_BYTES);
            &[&p.job]
        }
        Msg::Result(r) => {
            cut(&mut r.reason, MAX_TEXT_BYTES);
            &[&r.job]
        }
    };
    match ids.iter().find(|id| id.len() > MAX_ID_BYTES) {
        Some(id) => Err(format!(
            "an identifier of {} bytes (at most {MAX_ID_BYTES})",
            id.len()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_at_a_character_boundary() {
        let mut s = "é".repeat(600);
        cut(&mut s, MAX_TEXT_BYTES);
        assert!(s.len() <= MAX_TEXT_BYTES && s.ends_with('…'), "{}", s.len());
        let mut short = "fine".to_string();
        cut(&mut short, 10);
        assert_eq!(short, "fine");
    }

    #[test]
    fn node_messages_are_bounded() {
        let mut m = Msg::Result(pb::JobResult {
            job: "jobs/abc".into(),
            reason: "x".repeat(1 << 20),
            ..Default::default()
        });
        node_message(&mut m).unwrap();
        let Msg::Result(r) = &m else { unreachable!() };
        assert!(r.reason.len() <= MAX_TEXT_BYTES);
        let mut m = Msg::Progress(pb::JobProgress {
            job: "j".repeat(MAX_ID_BYTES + 1),
            ..Default::default()
        });
        assert!(node_message(&mut m).is_err());
    }

    #[test]
    fn a_hello_with_too_many_printers_names_the_field() {
        let hello = pb::NodeHello {
            printers: vec![pb::PrinterSpec::default(); MAX_PRINTERS_PER_NODE + 1],
            ..Default::default()
        };
        let e = node_hello(&hello).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("hello.printers has 1001 entries"),
            "{}",
            e.message()
        );
        let mut spec = pb::PrinterSpec {
            printer_id: "mk3".into(),
            ..Default::default()
        };
        spec.materials.push(pb::Material {
            kind: "P".repeat(MAX_LABEL_BYTES + 1),
            colour: String::new(),
        });
        let hello = pb::NodeHello {
            printers: vec![spec],
            ..Default::default()
        };
        let e = node_hello(&hello).unwrap_err();
        assert!(
            e.message()
                .starts_with("hello.printers.materials.kind is 257 bytes"),
            "{}",
            e.message()
        );
    }
}
