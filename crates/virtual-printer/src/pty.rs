//! A real pseudo-terminal for the virtual printer: the printer owns the master side as an
//! async byte stream; a host opens the slave path like any serial port.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Errors setting up the pseudo-terminal.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// A system call failed.
    #[error("pseudo-terminal: {0}")]
    Sys(#[from] nix::Error),
    /// Registering with the runtime or resolving the path failed.
    #[error("pseudo-terminal: {0}")]
    Io(#[from] io::Error),
}

/// The master side of a pseudo-terminal pair, plus the slave kept open so the master never
/// sees a hang-up between host connections.
pub struct Pty {
    master: AsyncFd<File>,
    _slave: OwnedFd,
    slave_path: PathBuf,
}

impl Pty {
    /// Opens a raw-mode pseudo-terminal pair. Needs a tokio runtime.
    #[allow(unsafe_code)] // registering a raw descriptor with tokio.
    pub fn open() -> Result<Self, PtyError> {
        let pair = nix::pty::openpty(None, None)?;
        // Raw mode: no echo, no line editing, no CR/LF translation, 8-bit clean.
        let mut termios = tcgetattr(pair.slave.as_fd())?;
        cfmakeraw(&mut termios);
        tcsetattr(pair.slave.as_fd(), SetArg::TCSANOW, &termios)?;
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd()))?;
        let flags = OFlag::from_bits_truncate(fcntl(pair.master.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            pair.master.as_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        // SAFETY: the File owns the master descriptor and lives exactly as long as the AsyncFd,
        // so the descriptor stays open and unchanged while registered.
        let master =
            unsafe { AsyncFd::register(File::from(pair.master)) }.map_err(io::Error::from)?;
        Ok(Self {
            master,
            _slave: pair.slave,
            slave_path,
        })
    }

    /// Path a host opens (`/dev/pts/N`).
    pub fn slave_path(&self) -> &PathBuf {
        &self.slave_path
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| inner.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|inner| inner.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
