//! CONNECT tunnels (HTTPS through the proxy): opened directly or through
//! the parent proxy, then bytes are copied both ways, never cached.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head a parent proxy may send to a CONNECT.
const MAX_PARENT_HEAD: usize = 8 * 1024;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The target or parent did not accept the connection.
    #[error("cannot reach {target}: {source}")]
    Unreachable {
        /// Who was not reachable.
        target: String,
        /// What the socket said.
        source: io::Error,
    },
    /// No connection in time.
    #[error("no connection to {0} in time")]
    Timeout(String),
    /// The parent proxy refused the tunnel.
    #[error("the parent proxy refused the tunnel: {0}")]
    Refused(String),
}

/// Opens a TCP connection to `target` (`host:port`), through `parent`
/// (`http://HOST:PORT`) when set.
pub async fn open(
    target: &str,
    parent: Option<&str>,
    timeout: Duration,
) -> Result<TcpStream, TunnelError> {
    let hop = match parent {
        Some(parent) => parent_address(parent),
        None => target.to_string(),
    };
    let connect = TcpStream::connect(hop.as_str());
    let mut stream = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(TunnelError::Timeout(hop)),
        Ok(Err(source)) => {
            return Err(TunnelError::Unreachable {
                target: hop,
                source,
            })
        }
        Ok(Ok(stream)) => stream,
    };
    if parent.is_some() {
        let ask = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let handshake = async {
            stream.write_all(ask.as_bytes()).await?;
            read_head(&mut stream).await
        };
        let head = match tokio::time::timeout(timeout, handshake).await {
            Err(_) => return Err(TunnelError::Timeout(hop)),
            Ok(Err(source)) => {
                return Err(TunnelError::Unreachable {
                    target: hop,
                    source,
                })
            }
            Ok(Ok(head)) => head,
        };
        let status_line = head.lines().next().unwrap_or("").to_string();
        if status_line.split_whitespace().nth(1) != Some("200") {
            return Err(TunnelError::Refused(status_line));
        }
    }
    Ok(stream)
}

/// `HOST:PORT` of a parent proxy URL (port 80 when absent).
fn parent_address(parent: &str) -> String {
    let rest = parent
        .strip_prefix("http://")
        .unwrap_or(parent)
        .trim_end_matches('/');
    let authority = rest.rsplit('@').next().unwrap_or(rest);
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    }
}

/// Reads a response head up to its blank line, byte by byte so that no
/// tunnelled byte after it is consumed.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PARENT_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        head.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_urls_give_host_and_port() {
        assert_eq!(parent_address("http://10.0.0.1:3128"), "10.0.0.1:3128");
        assert_eq!(parent_address("http://squid.example/"), "squid.example:80");
        assert_eq!(parent_address("http://u:p@proxy:8080"), "proxy:8080");
    }
}
