//! Every limit and timeout the sender uses, in one place, with the defaults the protocol notes
//! give (OctoPrint's and Marlin's defaults).

use std::time::Duration;

/// Configuration of one printer connection.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Firmware line buffer in bytes, NUL included (Marlin MAX_CMD_SIZE).
    pub max_cmd_size: usize,
    /// Sent numbered lines kept for resends (rule 3: at least 50).
    pub history_lines: usize,
    /// Consecutive resends of one line before the job fails.
    pub max_resends_of_line: u32,
    /// A resend request without its `ok` is treated as if the `ok` came after this long.
    pub resend_ok_grace: Duration,
    /// Pipeline lines when the firmware answers with ADVANCED_OK.
    pub pipelining: bool,
    /// Upper bound of lines in flight with ADVANCED_OK (the firmware's B caps it further).
    pub max_window: usize,
    /// Bytes the firmware's receive buffer holds; lines in flight never exceed it.
    pub rx_buffer_bytes: usize,
    /// Reply timeout.
    pub reply_timeout: Duration,
    /// Reply timeout once the firmware has shown it sends `busy:` keepalives.
    pub reply_timeout_busy: Duration,
    /// Time without any acknowledgement or keepalive while a long command (G28, M109, ...) is in
    /// flight before its `ok` is taken as lost. Rule 6 exempts long commands from the reply
    /// timer; this bound only catches an `ok` lost after one.
    pub long_command_timeout: Duration,
    /// Recover a lost `ok` with a numbered M105 once it is overdue by the adaptive timeout
    /// (a few observed round trips), instead of waiting for the reply timeout.
    pub quick_probe: bool,
    /// Least wait before a quick probe (also the wait before the first round trip is known is
    /// [`BridgeConfig::quick_probe_max`]).
    pub quick_probe_min: Duration,
    /// Most wait before a quick probe, before backoff.
    pub quick_probe_max: Duration,
    /// Quick probes in a row without an acknowledgement; then only the reply timeout acts.
    pub max_quick_probes: u32,
    /// Consecutive reply timeouts (each provoking with M105) before the printer is declared gone.
    pub max_consecutive_timeouts: u32,
    /// Time for the firmware to answer the handshake.
    pub detect_timeout: Duration,
    /// Interval of handshake retries while detecting.
    pub hello_interval: Duration,
    /// Time to wait for the M115 answer.
    pub capability_timeout: Duration,
    /// Temperature poll interval when the firmware cannot autoreport.
    pub temperature_poll: Duration,
    /// Poll interval while a heater is far from its target.
    pub temperature_poll_heating: Duration,
    /// Autoreport interval in seconds for M155 (0 turns autoreport off and polls instead).
    pub autoreport_interval_s: u32,
    /// A `wait` acknowledges in-flight lines sent at least this long ago.
    pub wait_grace: Duration,
    /// Least time between two progress events.
    pub progress_interval: Duration,
    /// Sent after a cancel (heaters off, fan off, motors off).
    pub end_gcode: Vec<String>,
    /// Sent at the safe point of a pause (e.g. park the head), empty by default.
    pub pause_gcode: Vec<String>,
    /// Sent before streaming resumes after a pause.
    pub resume_gcode: Vec<String>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            max_cmd_size: crate::gcode::MARLIN_MAX_CMD_SIZE,
            history_lines: 256,
            max_resends_of_line: 10,
            resend_ok_grace: Duration::from_millis(500),
            pipelining: true,
            max_window: 8,
            rx_buffer_bytes: 127,
            reply_timeout: Duration::from_secs(30),
            reply_timeout_busy: Duration::from_secs(3),
            long_command_timeout: Duration::from_secs(15 * 60),
            quick_probe: true,
            // Above the scheduling hiccups of a loaded host, which would draw needless
            // (harmless) probes.
            quick_probe_min: Duration::from_millis(50),
            quick_probe_max: Duration::from_secs(1),
            max_quick_probes: 4,
            max_consecutive_timeouts: 5,
            detect_timeout: Duration::from_secs(10),
            hello_interval: Duration::from_secs(1),
            capability_timeout: Duration::from_secs(3),
            temperature_poll: Duration::from_secs(5),
            temperature_poll_heating: Duration::from_secs(2),
            autoreport_interval_s: 2,
            wait_grace: Duration::from_millis(500),
            progress_interval: Duration::from_millis(250),
            end_gcode: ["M104 S0", "M140 S0", "M107", "M84"]
                .map(String::from)
                .to_vec(),
            pause_gcode: Vec::new(),
            resume_gcode: Vec::new(),
        }
    }
}
