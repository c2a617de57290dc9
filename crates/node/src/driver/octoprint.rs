//! The OctoPrint driver: OctoPrint's REST API (1.x shapes; the 2.0 server answers them too
//! when no `X-OctoPrint-Api-Version` is sent) with an API key in `X-Api-Key`.
//!
//! - Start: `POST /api/files/local` (multipart, `select=true`, `print=true`) and the answer's
//!   `effectivePrint` must be true: OctoPrint accepts an upload and silently does not print
//!   it when the printer is busy or not operational.
//! - Pause and resume send `{"command":"pause","action":"pause"|"resume"}` explicitly: a pause
//!   without an action toggles, so a repeated or late command would undo itself.
//! - State, progress and temperatures are polled from `/api/job` and `/api/printer`; the end
//!   of a print is seen as the state leaving printing/paused, with the completion telling a
//!   finished print from a stopped one. A print too short to be seen running is recognised
//!   by its file and a completion of 100 %.
//! - OctoPrint prints on its own: when the node loses it, the print goes on, and
//!   [`OctoPrintDriver::attach`] finds it again by the job's file name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    Attach, DriverError, DriverEvent, Events, HostState, JobEnd, PrintFile, ProgressUpdate, Temps,
};
use crate::secret::Secret;

/// Time for one ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for OctoPrint to connect to its printer after the node asked it to.
const PRINTER_CONNECT: Duration = Duration::from_secs(20);
/// Failed polls in a row after which the host counts as lost.
const LOST_AFTER_FAILURES: u32 = 2;
/// How long a started print may stay unseen (neither running nor ended) before it counts as
/// not started.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Slowest upload rate a timeout is derived from (bytes per second).
const SLOWEST_UPLOAD_BPS: u64 = 50_000;

/// What the poller follows.
#[derive(Debug, Default)]
struct Track {
    /// The host-side file name of the job this node runs there.
    file: Option<String>,
    /// Whether the poller has seen it printing or paused.
    seen_running: bool,
    /// When it was handed over (for [`START_DEADLINE`]).
    since: Option<tokio::time::Instant>,
}

/// A printer behind an OctoPrint server.
pub struct OctoPrintDriver {
    printer_id: String,
    base: String,
    client: Client,
    poll: Duration,
    track: Arc<Mutex<Track>>,
    poller: Option<JoinHandle<()>>,
}

impl Drop for OctoPrintDriver {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}

/// The reason in an error answer: OctoPrint's `{"error": ...}` or the start of the body.
fn reason_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let text = body.trim();
            text.chars().take(200).collect()
        })
}

/// Classifies an HTTP failure: a key OctoPrint refuses or a printer it says is not ready is
/// the printer's fault; a file it refuses is the job's.
fn classify(status: StatusCode, body: &str, what: &str) -> DriverError {
    let reason = reason_of(body);
    match status.as_u16() {
        401 | 403 => DriverError::Fault(format!(
            "OctoPrint refused the API key ({status}) when {what}: check the printer's api_key"
        )),
        409 => DriverError::Fault(format!(
            "OctoPrint says the printer is not ready for {what}: {reason}"
        )),
        400 | 413 | 415 | 422 => {
            DriverError::Refused(format!("OctoPrint refused {what}: {reason}"))
        }
        404 => DriverError::Fault(format!(
            "OctoPrint has no such endpoint for {what} ({status}): is the url an OctoPrint server?"
        )),
        _ => DriverError::Fault(format!("OctoPrint failed {what} ({status}): {reason}")),
    }
}

fn unreachable(e: reqwest::Error, what: &str) -> DriverError {
    // reqwest's message names the URL (never the key, which travels in a header).
    DriverError::Unreachable(format!("OctoPrint did not answer {what}: {e}"))
}

async fn ok(resp: Result<Response, reqwest::Error>, what: &str) -> Result<Response, DriverError> {
    let resp = resp.map_err(|e| unreachable(e, what))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(classify(status, &body, what))
}

async fn json_of(resp: Response, what: &str) -> Result<Value, DriverError> {
    resp.json::<Value>().await.map_err(|e| {
        DriverError::Unreachable(format!("OctoPrint's answer to {what} is not JSON: {e}"))
    })
}

/// (actual, target) of one heater in `/api/printer`'s `temperature`.
fn heater(t: &Value, name: &str) -> (f64, f64) {
    let h = &t[name];
    (
        h["actual"].as_f64().unwrap_or(0.0),
        h["target"].as_f64().unwrap_or(0.0),
    )
}

/// OctoPrint's state flags, as the poller needs them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Flags {
    operational: bool,
    printing: bool,
    paused: bool,
    busy: bool,
    error: bool,
}

impl Flags {
    fn from_printer(state: &Value) -> Flags {
        let f = &state["flags"];
        let b = |k: &str| f[k].as_bool().unwrap_or(false);
        Flags {
            operational: b("operational"),
            printing: b("printing") || b("pausing") || b("resuming"),
            paused: b("paused"),
            busy: b("cancelling") || b("finishing") || b("pausing") || b("resuming"),
            error: b("error") || (b("closedOrError") && !b("operational")),
        }
    }
}

impl OctoPrintDriver {
    /// A driver for the OctoPrint at `url` with `api_key`, polled every `poll`.
    pub fn new(
        printer_id: &str,
        url: &str,
        api_key: &Secret,
        poll: Duration,
    ) -> Result<Self, DriverError> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(api_key.expose()).map_err(|_| {
            DriverError::Fault("the api_key holds characters an HTTP header cannot carry".into())
        })?;
        key.set_sensitive(true);
        headers.insert("X-Api-Key", key);
        let client = Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| DriverError::Fault(format!("cannot build an HTTP client: {e}")))?;
        Ok(OctoPrintDriver {
            printer_id: printer_id.to_string(),
            base: url.trim_end_matches('/').to_string(),
            client,
            poll,
            track: Arc::new(Mutex::new(Track::default())),
            poller: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn track(&self) -> std::sync::MutexGuard<'_, Track> {
        self.track.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get(&self, path: &str, what: &str) -> Result<Value, DriverError> {
        let resp = ok(self.client.get(self.url(path)).send().await, what).await?;
        json_of(resp, what).await
    }

    async fn post(&self, path: &str, body: Value, what: &str) -> Result<(), DriverError> {
        ok(
            self.client.post(self.url(path)).json(&body).send().await,
            what,
        )
        .await?;
        Ok(())
    }

    /// Checks the key, has OctoPrint connect to its printer if it is not, and starts the
    /// poller.
    pub async fn connect(&mut self) -> Result<Events, DriverError> {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        self.get("/api/version", "the version request").await?;
        let deadline = tokio::time::Instant::now() + PRINTER_CONNECT;
        let mut asked = false;
        loop {
            let c = self
                .get("/api/connection", "the connection request")
                .await?;
            let state = c["current"]["state"].as_str().unwrap_or("").to_string();
            let s = state.to_ascii_lowercase();
            if s.starts_with("operational")
                || s.starts_with("printing")
                || s.starts_with("paused")
                || s.starts_with("pausing")
                || s.starts_with("resuming")
                || s.starts_with("cancelling")
                || s.starts_with("finishing")
                || s.starts_with("starting")
            {
                break;
            }
            let settling = s.starts_with("opening")
                || s.starts_with("connecting")
                || s.starts_with("detecting");
            if !asked && !settling {
                tracing::info!(printer = %self.printer_id, %state, "asking OctoPrint to connect to its printer");
                self.post(
                    "/api/connection",
                    json!({"command": "connect"}),
                    "the request to connect to the printer",
                )
                .await?;
                asked = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Unreachable(format!(
                    "OctoPrint is up but not connected to its printer (state {state:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let poller = Poller {
            client: self.client.clone(),
            base: self.base.clone(),
            track: Arc::clone(&self.track),
            poll: self.poll,
            tx,
        };
        self.poller = Some(tokio::spawn(poller.run()));
        Ok(rx)
    }

    /// Uploads the file with `print=true` and checks that OctoPrint did start it.
    pub async fn start(&mut self, file: PrintFile) -> Result<(), DriverError> {
        let what = "the upload of the job's G-code";
        let f = tokio::fs::File::open(&file.path)
            .await
            .map_err(|e| DriverError::Fault(format!("cannot read {}: {e}", file.path.display())))?;
        let len = f
            .metadata()
            .await
            .map_err(|e| DriverError::Fault(format!("cannot read {}: {e}", file.path.display())))?
            .len();
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(f), len)
            .file_name(file.host_name.clone())
            .mime_str("application/octet-stream")
            .map_err(|e| DriverError::Fault(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("select", "true")
            .text("print", "true");
        // The upload's time grows with the file; a slow link must not look like a dead host.
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(len / SLOWEST_UPLOAD_BPS);
        {
            let mut t = self.track();
            t.file = Some(file.host_name.clone());
            t.seen_running = false;
            t.since = Some(tokio::time::Instant::now());
        }
        let sent = self
            .client
            .post(self.url("/api/files/local"))
            .multipart(form)
            .timeout(timeout)
            .send()
            .await;
        let resp = match ok(sent, what).await {
            Ok(r) => r,
            Err(e) => {
                self.track().file = None;
                return Err(e);
            }
        };
        let answer = json_of(resp, what).await?;
        if answer["effectivePrint"].as_bool() != Some(true) {
            self.track().file = None;
            return Err(DriverError::Fault(
                "OctoPrint stored the file but did not start it (effectivePrint is false): the printer is busy or not ready".into(),
            ));
        }
        tracing::info!(printer = %self.printer_id, file = %file.host_name, bytes = len, "OctoPrint started the print");
        Ok(())
    }

    /// Finds the job `host_name` on OctoPrint after the node lost it.
    pub async fn attach(&mut self, host_name: &str) -> Result<Attach, DriverError> {
        let job = self.get("/api/job", "the job request").await?;
        let name = job["job"]["file"]["name"].as_str().unwrap_or("");
        let state = job["state"].as_str().unwrap_or("").to_ascii_lowercase();
        if name != host_name {
            return Ok(Attach::Ended(JobEnd::Fault(format!(
                "the print is no longer on OctoPrint (its current job is {:?}, state {state:?}): OctoPrint or its printer restarted",
                if name.is_empty() { "none" } else { name }
            ))));
        }
        let running = ["printing", "paused", "pausing", "resuming", "starting"]
            .iter()
            .any(|s| state.starts_with(s));
        if running {
            let mut t = self.track();
            t.file = Some(host_name.to_string());
            t.seen_running = true;
            t.since = Some(tokio::time::Instant::now());
            return Ok(Attach::Running);
        }
        let completion = job["progress"]["completion"].as_f64().unwrap_or(0.0);
        Ok(Attach::Ended(if completion >= 100.0 {
            JobEnd::Completed
        } else if state.starts_with("error") || state.starts_with("offline") {
            JobEnd::Fault(format!("OctoPrint reports {state:?}"))
        } else {
            JobEnd::Cancelled(format!(
                "the print was stopped on OctoPrint at {completion:.0} % while the node was away"
            ))
        }))
    }

    /// Pauses (explicit action: a bare pause toggles).
    pub async fn pause(&mut self) -> Result<(), DriverError> {
        self.post(
            "/api/job",
            json!({"command": "pause", "action": "pause"}),
            "the pause",
        )
        .await
    }

    /// Resumes (explicit action).
    pub async fn resume(&mut self) -> Result<(), DriverError> {
        self.post(
            "/api/job",
            json!({"command": "pause", "action": "resume"}),
            "the resume",
        )
        .await
    }

    /// Cancels the print.
    pub async fn cancel(&mut self) -> Result<(), DriverError> {
        self.post("/api/job", json!({"command": "cancel"}), "the cancel")
            .await
    }

    /// Stops polling (OctoPrint keeps its printer connected).
    pub async fn disconnect(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        *self.track() = Track::default();
    }
}

/// The polling task of one connected driver.
struct Poller {
    client: Client,
    base: String,
    track: Arc<Mutex<Track>>,
    poll: Duration,
    tx: mpsc::UnboundedSender<DriverEvent>,
}

impl Poller {
    async fn get(&self, path: &str) -> Result<(StatusCode, Value), String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("OctoPrint did not answer: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(format!("OctoPrint refused the API key ({status})"));
        }
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    fn send(&self, ev: DriverEvent) -> bool {
        self.tx.send(ev).is_ok()
    }

    async fn run(self) {
        let mut failures = 0;
        let mut last_state: Option<HostState> = None;
        let mut interval = tokio::time::interval(self.poll);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let polled = async {
                let (ps, printer) = self.get("/api/printer").await?;
                let (_, job) = self.get("/api/job").await?;
                Ok::<_, String>((ps, printer, job))
            }
            .await;
            let (ps, printer, job) = match polled {
                Ok(x) => {
                    failures = 0;
                    x
                }
                Err(e) => {
                    failures += 1;
                    if failures >= LOST_AFTER_FAILURES {
                        let _ = self.tx.send(DriverEvent::Lost(e));
                        return;
                    }
                    continue;
                }
            };
            // 409 from /api/printer: OctoPrint is up but its printer is not connected.
            if ps == StatusCode::CONFLICT {
                let state = job["state"].as_str().unwrap_or("not connected");
                let _ = self.tx.send(DriverEvent::Lost(format!(
                    "OctoPrint lost its printer (state {state:?})"
                )));
                return;
            }
            let flags = Flags::from_printer(&printer["state"]);
            let t = &printer["temperature"];
            let (hotend, bed) = (heater(t, "tool0"), heater(t, "bed"));
            let far = |(a, tg): (f64, f64)| tg > 0.0 && (a - tg).abs() > 5.0;
            if !self.send(DriverEvent::Temperatures(Temps {
                hotend,
                bed,
                heating: far(hotend) || far(bed),
            })) {
                return;
            }
            let state = if flags.error {
                HostState::Error(
                    printer["state"]["error"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .or(printer["state"]["text"].as_str())
                        .unwrap_or("error")
                        .to_string(),
                )
            } else if flags.paused {
                HostState::Paused
            } else if flags.printing {
                HostState::Printing
            } else {
                HostState::Idle
            };
            if last_state.as_ref() != Some(&state) {
                last_state = Some(state.clone());
                if !self.send(DriverEvent::State(state.clone())) {
                    return;
                }
            }
            if let Some(end) = self.follow(&flags, &state, &job) {
                *self.track.lock().unwrap_or_else(|e| e.into_inner()) = Track::default();
                if !self.send(DriverEvent::Finished(end)) {
                    return;
                }
            }
        }
    }

    /// Progress of the followed job, and its end once it has ended.
    fn follow(&self, flags: &Flags, state: &HostState, job: &Value) -> Option<JobEnd> {
        let mut t = self.track.lock().unwrap_or_else(|e| e.into_inner());
        let file = t.file.clone()?;
        let ours = job["job"]["file"]["name"].as_str() == Some(file.as_str());
        let completion = job["progress"]["completion"].as_f64();
        let running = flags.printing || flags.paused || flags.busy;
        if ours && running {
            t.seen_running = true;
            let _ = self.tx.send(DriverEvent::Progress(ProgressUpdate {
                fraction: completion.map(|c| (c / 100.0).clamp(0.0, 1.0)),
                remaining_s: job["progress"]["printTimeLeft"].as_f64(),
                ..ProgressUpdate::default()
            }));
            return None;
        }
        if let HostState::Error(e) = state {
            return Some(JobEnd::Fault(format!("OctoPrint reports an error: {e}")));
        }
        if running {
            // Another file runs: someone started a print by hand over ours.
            return t
                .seen_running
                .then(|| JobEnd::Cancelled("another print was started on OctoPrint".into()));
        }
        let done = ours && completion.is_some_and(|c| c >= 100.0);
        if done {
            return Some(JobEnd::Completed);
        }
        if t.seen_running {
            return Some(JobEnd::Cancelled(format!(
                "the print was stopped on OctoPrint at {:.0} %",
                completion.unwrap_or(0.0)
            )));
        }
        if t.since.is_some_and(|s| s.elapsed() > START_DEADLINE) {
            return Some(JobEnd::Fault(format!(
                "OctoPrint accepted the print but did not run it within {} s",
                START_DEADLINE.as_secs()
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_the_router() {
        let body = r#"{"error": "Printer is not operational"}"#;
        match classify(StatusCode::CONFLICT, body, "the upload") {
            DriverError::Fault(m) => assert!(m.contains("not operational"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, "", "x"),
            DriverError::Fault(m) if m.contains("api_key")
        ));
        assert!(matches!(
            classify(StatusCode::UNSUPPORTED_MEDIA_TYPE, r#"{"error":"bad type"}"#, "x"),
            DriverError::Refused(m) if m.contains("bad type")
        ));
        assert_eq!(reason_of("<html>oops</html>"), "<html>oops</html>");
    }

    #[test]
    fn flags_map_pausing_to_printing_and_closed_to_error() {
        let f = Flags::from_printer(&json!({"flags": {"operational": true, "pausing": true}}));
        assert!(f.printing && f.busy && !f.paused);
        let f = Flags::from_printer(&json!({"flags": {"closedOrError": true}}));
        assert!(f.error);
    }
}
