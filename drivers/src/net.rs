//! Connecting to a field device over TCP, the same way for every protocol client: resolve `host:port` at
//! every connect (so a DNS change is picked up after a reconnect), try each address, all within one time
//! limit, and turn Nagle off (small request/reply exchanges must not wait). Also the one rule for telling a
//! connection the device closed from other transport failures ([`closed_by_peer`]).
//!
//! It deliberately does not retry or keep connections: that is each client's business.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{lookup_host, TcpStream};
use tokio::time::timeout;

/// Why a connection (TCP, or a serial port) could not be opened. The text names no address: the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// Nothing listens there (TCP RST to the SYN).
    #[error("connection refused")]
    Refused,
    /// Anything else: no route, a name that does not resolve, a serial port that cannot be opened.
    #[error("{0}")]
    Failed(String),
}

/// Opens a TCP connection to `addr` within `limit`.
pub async fn connect(addr: &str, limit: Duration) -> Result<TcpStream, ConnectError> {
    let stream = timeout(limit, async {
        let addrs: Vec<SocketAddr> = lookup_host(addr).await?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
    .map_err(|_| ConnectError::Timeout(limit))?
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        _ => ConnectError::Failed(e.to_string()),
    })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Whether an I/O error means the device closed (or reset) the connection: the same for every client.
pub fn closed_by_peer(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_refused() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let got = connect(&addr, Duration::from_secs(2)).await;
        assert_eq!(got.err(), Some(ConnectError::Refused));
        assert_eq!(ConnectError::Refused.to_string(), "connection refused");
    }

    #[test]
    fn resets_eofs_and_broken_pipes_are_closed_by_the_peer() {
        use std::io::{Error, ErrorKind};
        for kind in [ErrorKind::UnexpectedEof, ErrorKind::ConnectionReset, ErrorKind::BrokenPipe] {
            assert!(closed_by_peer(&Error::from(kind)), "{kind:?}");
        }
        assert!(!closed_by_peer(&Error::from(ErrorKind::TimedOut)));
        // What tokio-modbus reports when the stream ends (`io::Error::last_os_error()`, often EINPROGRESS) is
        // not recognisable by kind: the Modbus client watches the stream's end itself.
        assert!(!closed_by_peer(&Error::from_raw_os_error(115)));
    }
}
