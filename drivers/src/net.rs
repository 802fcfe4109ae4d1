//! Connecting to a field device over TCP, the same way for every protocol client: resolve `host:port` at
//! every connect (so a DNS change is picked up after a reconnect), try each address, all within one time
//! limit, and turn Nagle off (small request/reply exchanges must not wait).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{lookup_host, TcpStream};
use tokio::time::timeout;

/// Opens a TCP connection to `addr` within `limit`; the error is a reason to show, naming no address.
pub async fn connect(addr: &str, limit: Duration) -> Result<TcpStream, String> {
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
    .map_err(|_| format!("no connection within {limit:?}"))?
    .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
