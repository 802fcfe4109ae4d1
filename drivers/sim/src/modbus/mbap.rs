//! Modbus TCP framing by hand: the 7-byte MBAP header (transaction id, protocol id, length, unit id) and the
//! PDU after it, read from a byte stream and written back.
//!
//! Hand-written rather than tokio-modbus' server so that fault injection controls every byte on the socket.
//! This module only frames; it does not interpret the PDU and does not decide what to answer. A stream that
//! cannot be a Modbus TCP request is a [`FrameError`], never a panic.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;

/// Bytes in the MBAP header.
pub(crate) const HEADER_LEN: usize = 7;
/// The largest PDU Modbus allows (256-byte serial frame minus address and CRC).
pub(crate) const MAX_PDU: usize = 253;
/// Once a frame has started, the rest must arrive within this time; a stalled half-frame is malformed.
pub(crate) const FRAME_COMPLETION: Duration = Duration::from_secs(5);

/// One request as framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) transaction_id: u16,
    pub(crate) unit_id: u8,
    /// Function code and data; never empty.
    pub(crate) pdu: Vec<u8>,
}

/// Why bytes on a connection are not a Modbus TCP request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection closed after {0} bytes of a frame")]
    Truncated(usize),
    #[error("protocol id {0:#06x} is not modbus (0)")]
    ProtocolId(u16),
    #[error("length field {0} is outside 2..=254")]
    Length(u16),
    #[error("frame not completed within {0:?}")]
    Stalled(Duration),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the peer sent bytes that are not Modbus TCP, as opposed to the connection failing under us.
    pub(crate) fn is_malformed(&self) -> bool {
        !matches!(self, FrameError::Io(_))
    }
}

/// Checks a header and returns the PDU length it announces.
fn pdu_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    let length = u16::from_be_bytes([header[4], header[5]]);
    if protocol != 0 {
        return Err(FrameError::ProtocolId(protocol));
    }
    // The length counts the unit id and the PDU, and a PDU has at least its function code.
    let pdu = usize::from(length).wrapping_sub(1);
    if !(1..=MAX_PDU).contains(&pdu) {
        return Err(FrameError::Length(length));
    }
    Ok(pdu)
}

/// Reads exactly `buf.len()` bytes; `already` bytes of the frame came before, for the error.
async fn read_rest<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8], already: usize) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => return Err(FrameError::Truncated(already + filled)),
            n => filled += n,
        }
    }
    Ok(())
}

/// Reads the next request. `Ok(None)` when the peer closed the connection between frames.
///
/// Waiting for the first byte has no time limit (clients keep idle connections open); the rest of the frame
/// must follow within `completion`.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    completion: Duration,
) -> Result<Option<Request>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Ok(None);
    }
    let rest = async {
        read_rest(reader, &mut header[first..], first).await?;
        let mut pdu = vec![0u8; pdu_len(&header)?];
        read_rest(reader, &mut pdu, HEADER_LEN).await?;
        Ok::<_, FrameError>(pdu)
    };
    let pdu = timeout(completion, rest).await.map_err(|_| FrameError::Stalled(completion))??;
    Ok(Some(Request { transaction_id: u16::from_be_bytes([header[0], header[1]]), unit_id: header[6], pdu }))
}

/// A reply frame carrying `pdu` for the request with `transaction_id` and `unit_id`.
pub(crate) fn reply(transaction_id: u16, unit_id: u8, pdu: &[u8]) -> Vec<u8> {
    // Reply PDUs are at most 252 bytes (a 125-register read), so the length fits.
    let length = (pdu.len() + 1) as u16;
    let mut frame = Vec::with_capacity(HEADER_LEN + pdu.len());
    frame.extend_from_slice(&transaction_id.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.push(unit_id);
    frame.extend_from_slice(pdu);
    frame
}

/// Bytes that no Modbus TCP client can take for a reply: a header with protocol id 0xDEAD and length 0 (not
/// even room for the unit id), then junk. A client that checks the length or the protocol id fails at once
/// instead of waiting for more bytes.
pub(crate) fn garbage(transaction_id: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + 8);
    frame.extend_from_slice(&transaction_id.to_be_bytes());
    frame.extend_from_slice(&0xDEADu16.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.push(0xFF);
    frame.extend_from_slice(b"\xBA\xADnoise!");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frame(bytes: &[u8]) -> Result<Option<Request>, FrameError> {
        read_request(&mut &bytes[..], Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn reads_a_request_and_what_follows_it() {
        let bytes = [0x12, 0x34, 0, 0, 0, 6, 7, 3, 0, 0x10, 0, 2, 0xAA];
        let mut reader = &bytes[..];
        let request = read_request(&mut reader, Duration::from_secs(1)).await;
        assert_eq!(
            request.ok().flatten(),
            Some(Request { transaction_id: 0x1234, unit_id: 7, pdu: vec![3, 0, 0x10, 0, 2] })
        );
        assert_eq!(reader, &[0xAA], "the next frame's bytes are left unread");
        assert!(matches!(frame(&[]).await, Ok(None)));
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        assert!(matches!(frame(&[0, 1, 0]).await, Err(FrameError::Truncated(3))));
        assert!(matches!(frame(&[0, 1, 0, 0, 0, 6, 1, 3, 0]).await, Err(FrameError::Truncated(9))));
        assert!(matches!(frame(&[0, 1, 0, 1, 0, 6, 1, 3, 0, 0, 0, 1]).await, Err(FrameError::ProtocolId(1))));
        assert!(matches!(frame(&[0, 1, 0, 0, 0xFF, 0xFF, 1]).await, Err(FrameError::Length(0xFFFF))));
        assert!(matches!(frame(&[0, 1, 0, 0, 0, 1, 1]).await, Err(FrameError::Length(1))));
        assert!(matches!(frame(&[0, 1, 0, 0, 0, 0, 1]).await, Err(FrameError::Length(0))));
        assert!(frame(&[0, 1, 0, 0, 0, 0, 1]).await.is_err_and(|e| e.is_malformed()));
    }

    #[tokio::test]
    async fn a_stalled_half_frame_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0, 1, 0]).await.ok();
        let got = read_request(&mut server, Duration::from_millis(20)).await;
        assert!(matches!(got, Err(FrameError::Stalled(_))), "{got:?}");
        drop(client);
    }

    #[test]
    fn replies_and_garbage() {
        assert_eq!(reply(0x0102, 9, &[3, 2, 0xAB, 0xCD]), vec![1, 2, 0, 0, 0, 5, 9, 3, 2, 0xAB, 0xCD]);
        let junk = garbage(5);
        assert_ne!(&junk[2..4], &[0, 0], "protocol id must not be modbus");
        assert_eq!(&junk[4..6], &[0, 0], "length 0 cannot hold a unit id");
    }
}
