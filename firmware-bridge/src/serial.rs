//! Opening a real serial port (or a pseudo-terminal) for the bridge, with the DTR policy:
//! on most Arduino-based boards a DTR edge resets the board, which is wanted before a fresh
//! connection and fatal in the middle of a print.

use std::time::Duration;

use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

use crate::error::BridgeError;

/// How long DTR is held low for a reset pulse.
const DTR_PULSE: Duration = Duration::from_millis(100);

/// What to do with the DTR line when the port opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtrPolicy {
    /// Assert DTR (the Linux default; resets boards with auto-reset once, on open).
    #[default]
    Assert,
    /// Leave DTR as the driver sets it.
    Preserve,
    /// Pulse DTR low then high to reset the board into a known state before the handshake.
    ResetPulse,
}

/// Opens `path` at `baud` (8N1, no flow control) as an async byte stream.
pub async fn open_serial(
    path: &str,
    baud: u32,
    dtr: DtrPolicy,
) -> Result<SerialStream, BridgeError> {
    let serial_err = |source| BridgeError::Serial {
        port: path.to_string(),
        source,
    };
    let builder = tokio_serial::new(path, baud);
    let builder = match dtr {
        DtrPolicy::Preserve => builder.preserve_dtr_on_open(),
        DtrPolicy::Assert | DtrPolicy::ResetPulse => builder.dtr_on_open(true),
    };
    let mut port = builder.open_native_async().map_err(serial_err)?;
    // Another process writing to the same printer would corrupt both streams.
    if let Err(e) = port.set_exclusive(true) {
        tracing::warn!("{path}: cannot lock the port exclusively: {e}");
    }
    if dtr == DtrPolicy::ResetPulse {
        // Pseudo-terminals have no modem lines; a failure there is harmless.
        if let Err(e) = port.write_data_terminal_ready(false) {
            tracing::warn!("{path}: cannot drop DTR: {e}");
        } else {
            tokio::time::sleep(DTR_PULSE).await;
            port.write_data_terminal_ready(true).map_err(serial_err)?;
        }
    }
    Ok(port)
}
