//! Opening and closing serial ports, for every protocol spoken on a serial line (Modbus RTU, CJ/T 188).
//!
//! This module deliberately does not frame, time or retry anything: that is each protocol's line driver.

use tokio_serial::{ClearBuffer, FlowControl, SerialPort, SerialStream};

use crate::rtu::{DataBits, LineSettings, Parity, SettingsError, StopBits};

/// Why a serial port could not be opened. The text names no path (callers name it).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The line's settings are not usable.
    #[error("{0}")]
    Settings(#[from] SettingsError),
    /// The operating system refused to open or flush the port.
    #[error("{0}")]
    Port(#[from] tokio_serial::Error),
}

/// Opens the port of `settings` with its baud rate and character format, no flow control, and exclusive access
/// (TIOCEXCL, so that a second program cannot interleave bytes on the half-duplex line). Whatever the driver had
/// buffered before is discarded: it is no answer to anything asked from now on. The error says why, without the
/// path (callers name it).
pub fn open(settings: &LineSettings) -> Result<SerialStream, OpenError> {
    settings.check()?;
    let builder = tokio_serial::new(&settings.path, settings.baud)
        .data_bits(match settings.data_bits {
            DataBits::Seven => tokio_serial::DataBits::Seven,
            DataBits::Eight => tokio_serial::DataBits::Eight,
        })
        .parity(match settings.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(match settings.stop_bits {
            StopBits::One => tokio_serial::StopBits::One,
            StopBits::Two => tokio_serial::StopBits::Two,
        })
        .flow_control(FlowControl::None);
    let port = SerialStream::open(&builder)?;
    port.clear(ClearBuffer::Input)?;
    Ok(port)
}

/// Closes `port` so that it can be opened again at once. Opening took exclusive access (TIOCEXCL); the kernel
/// lifts it only at the tty's last close, which a pty whose other side still holds it open never sees, so it is
/// given back explicitly.
pub fn close(mut port: SerialStream) {
    let _ = port.set_exclusive(false);
}

/// Discards what the port has received and not yet been read: stale bytes before a new request.
pub fn discard_input(port: &SerialStream) {
    let _ = port.clear(ClearBuffer::Input);
}
