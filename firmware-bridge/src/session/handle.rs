//! The public face of a connection: [`connect`] spawns the connection task and returns a
//! [`PrinterHandle`]; each handle call becomes a [`Control`] message the task answers. Printer
//! host actions (`//action:pause` ...) land here too, since they ask for the same things.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::Session;
use super::handshake::Link;
use super::job::Phase;
use crate::config::BridgeConfig;
use crate::error::BridgeError;
use crate::events::{Event, FirmwareInfo};
use crate::gcode::{self, GcodeJob};
use crate::reply::HostAction;

/// Requests queued from handles before senders wait.
const CONTROL_QUEUE: usize = 32;

type Ack = oneshot::Sender<Result<(), BridgeError>>;

/// A request from a handle to the connection task.
pub(super) enum Control {
    Start(Box<GcodeJob>, Ack),
    Pause(Ack),
    Resume(Ack),
    Cancel(Ack),
    EmergencyStop(Ack),
    Command(String, Ack),
    Prompt(String, Ack),
    Disconnect(Ack),
}

/// Drives one connected printer. Cheap to clone; every clone talks to the same connection.
#[derive(Clone, Debug)]
pub struct PrinterHandle {
    tx: mpsc::Sender<Control>,
    firmware: FirmwareInfo,
}

impl PrinterHandle {
    /// What the firmware reported at connect.
    pub fn firmware(&self) -> &FirmwareInfo {
        &self.firmware
    }

    async fn ask(&self, make: impl FnOnce(Ack) -> Control) -> Result<(), BridgeError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(make(ack))
            .await
            .map_err(|_| BridgeError::Closed)?;
        rx.await.map_err(|_| BridgeError::Closed)?
    }

    /// Starts streaming a validated job. Fails unless the printer is operational and idle.
    pub async fn start(&self, job: GcodeJob) -> Result<(), BridgeError> {
        self.ask(|a| Control::Start(Box::new(job), a)).await
    }

    /// Pauses at the next safe point: lines already sent finish, then the pause G-code runs.
    pub async fn pause(&self) -> Result<(), BridgeError> {
        self.ask(Control::Pause).await
    }

    /// Resumes a paused job (resume G-code first).
    pub async fn resume(&self) -> Result<(), BridgeError> {
        self.ask(Control::Resume).await
    }

    /// Stops streaming; lines already sent finish, then the end G-code runs.
    pub async fn cancel(&self) -> Result<(), BridgeError> {
        self.ask(Control::Cancel).await
    }

    /// Sends M112 at once, ahead of anything queued; the job fails and the printer halts.
    pub async fn emergency_stop(&self) -> Result<(), BridgeError> {
        self.ask(Control::EmergencyStop).await
    }

    /// Sends one command (numbered, with resends) when no job is streaming, or while paused;
    /// e.g. `M876 S1` to answer a prompt.
    pub async fn command(&self, command: &str) -> Result<(), BridgeError> {
        let cmd = gcode::clean_line(command).unwrap_or_default().to_string();
        if let Some(reason) = gcode::unsendable(&cmd) {
            return Err(BridgeError::BadCommand(reason));
        }
        self.ask(|a| Control::Command(cmd, a)).await
    }

    /// Answers a printer prompt (`//action:prompt_*`) with button `choice` (`M876 S<choice>`).
    pub async fn answer_prompt(&self, choice: u32) -> Result<(), BridgeError> {
        let cmd = format!("M876 S{choice}");
        self.ask(|a| Control::Prompt(cmd, a)).await
    }

    /// Closes the connection (fails a running job).
    pub async fn disconnect(&self) -> Result<(), BridgeError> {
        self.ask(Control::Disconnect).await
    }
}

/// Connects over any byte stream: runs the handshake (M110, M115, autoreport) and returns the
/// handle and the event stream once the firmware answered.
pub async fn connect<S>(
    stream: S,
    config: BridgeConfig,
) -> Result<(PrinterHandle, mpsc::UnboundedReceiver<Event>), BridgeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (ready_tx, ready_rx) = oneshot::channel();
    let session = Session::new(read, write, config, events_tx, ready_tx);
    tokio::spawn(session.run(control_rx));
    let firmware = ready_rx.await.map_err(|_| BridgeError::Closed)??;
    Ok((
        PrinterHandle {
            tx: control_tx,
            firmware,
        },
        events_rx,
    ))
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    pub(super) async fn on_control(&mut self, msg: Control) -> Result<(), BridgeError> {
        match msg {
            Control::Start(job, ack) => {
                let result = self.start_job(*job).await;
                let _ = ack.send(result);
            }
            Control::Pause(ack) => {
                let _ = ack.send(self.pause());
            }
            Control::Resume(ack) => {
                let _ = ack.send(self.resume());
            }
            Control::Cancel(ack) => {
                let _ = ack.send(self.cancel());
            }
            Control::EmergencyStop(ack) => {
                let result = self.emergency_stop().await;
                let _ = ack.send(result);
            }
            Control::Command(cmd, ack) => {
                let ok = self.link == Link::Ready
                    && self.job.as_ref().is_none_or(|j| j.phase == Phase::Paused);
                let result = if cmd.is_empty() {
                    Ok(())
                } else if ok {
                    self.control_queue.push_back(cmd);
                    Ok(())
                } else {
                    Err(self.invalid("send a command"))
                };
                let _ = ack.send(result);
            }
            Control::Prompt(cmd, ack) => {
                // A prompt usually comes while printing (e.g. filament runout): the answer goes
                // ahead of job lines.
                let result = if self.link == Link::Ready {
                    self.control_queue.push_front(cmd);
                    Ok(())
                } else {
                    Err(self.invalid("answer a prompt"))
                };
                let _ = ack.send(result);
            }
            Control::Disconnect(ack) => {
                self.fail_job("disconnected on request");
                self.link = Link::Closed;
                let _ = ack.send(Ok(()));
            }
        }
        Ok(())
    }

    /// The error for a request the current state does not allow.
    pub(super) fn invalid(&self, action: &'static str) -> BridgeError {
        BridgeError::InvalidState {
            action,
            state: format!("{:?}", self.state).to_lowercase(),
        }
    }

    /// `//action:...` from the printer (e.g. filament runout): honoured like a handle request.
    pub(super) fn on_host_action(&mut self, action: HostAction) {
        self.emit(Event::HostAction(action.clone()));
        let result = match action {
            HostAction::Pause => self.pause(),
            HostAction::Resume => self.resume(),
            HostAction::Cancel => self.cancel(),
            HostAction::Disconnect => {
                self.fail_job("printer asked to disconnect");
                self.link = Link::Closed;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::info!("printer action ignored: {e}");
        }
    }
}
