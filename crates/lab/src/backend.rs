//! The tiny per-node backend: answers every UDP datagram and every HTTP `GET` with its node name.
//!
//! It stands in for the pods behind a LoadBalancer Service. It binds the wildcard address (`[::]`
//! dual-stack, or `0.0.0.0` where IPv6 is off), so a Service IP that a kube-proxy stand-in puts on
//! a dummy interface of the node reaches it without restarting it when the IP moves.
//!
//! UDP reply: `<node name>\n` followed by the request's bytes (at most [`ECHO_BYTES_MAX`]), so a
//! prober can match a reply to its request. Because the socket is bound to the wildcard address,
//! the kernel picks the reply's source address by routing (usually the node's LAN address, not the
//! Service IP); the probe matches replies by content, not by source address.
//!
//! HTTP reply: `200 OK` with body `<node name>\n` to `GET`, `405` to anything else; one request per
//! connection (`Connection: close`).
//!
//! The backend runs on plain threads: it has no state to share and must stay up under load.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The UDP port the demo, tests and bench use by default.
pub const UDP_PORT_DEFAULT: u16 = 7777;
/// The HTTP port the demo, tests and bench use by default.
pub const HTTP_PORT_DEFAULT: u16 = 8080;
/// How many request bytes a UDP reply echoes after the node name.
pub const ECHO_BYTES_MAX: usize = 512;
/// The largest HTTP request head the backend reads before answering `400`.
const HTTP_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long one HTTP connection may take to send its request.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the serving threads look at the stop flag.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the backend serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// The name it answers with (the node's name).
    pub node_name: String,
    /// UDP port (0 picks a free one; `None` disables UDP).
    pub udp_port: Option<u16>,
    /// HTTP port (0 picks a free one; `None` disables HTTP).
    pub http_port: Option<u16>,
}

impl BackendConfig {
    /// The default ports, answering with `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            udp_port: Some(UDP_PORT_DEFAULT),
            http_port: Some(HTTP_PORT_DEFAULT),
        }
    }
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The node name is empty or has a line break (it would corrupt the reply format).
    #[error("backend node name {node_name:?} must be non-empty and on one line")]
    BadNodeName {
        /// The rejected name.
        node_name: String,
    },
    /// Binding a socket failed.
    #[error("backend cannot bind {protocol} port {port}")]
    Bind {
        /// `udp` or `http`.
        protocol: &'static str,
        /// The port.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Configuring a bound socket failed.
    #[error("backend cannot configure its {protocol} socket")]
    Socket {
        /// `udp` or `http`.
        protocol: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running backend; dropping it stops it.
#[derive(Debug)]
pub struct Backend {
    udp_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Backend {
    /// Binds the sockets and starts serving on background threads.
    pub fn start(config: &BackendConfig) -> Result<Self, BackendError> {
        if config.node_name.is_empty() || config.node_name.contains(['\n', '\r']) {
            return Err(BackendError::BadNodeName {
                node_name: config.node_name.clone(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut backend = Self {
            udp_addr: None,
            http_addr: None,
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        if let Some(port) = config.udp_port {
            let socket = bind_udp(port)?;
            socket
                .set_read_timeout(Some(STOP_POLL_INTERVAL))
                .map_err(|source| BackendError::Socket {
                    protocol: "udp",
                    source,
                })?;
            backend.udp_addr = socket.local_addr().ok();
            let node_name = config.node_name.clone();
            let stop = Arc::clone(&stop);
            backend.threads.push(std::thread::spawn(move || {
                serve_udp(&socket, &node_name, &stop)
            }));
        }
        if let Some(port) = config.http_port {
            let listener = bind_tcp(port)?;
            listener
                .set_nonblocking(true)
                .map_err(|source| BackendError::Socket {
                    protocol: "http",
                    source,
                })?;
            backend.http_addr = listener.local_addr().ok();
            let node_name = config.node_name.clone();
            let stop = Arc::clone(&stop);
            backend.threads.push(std::thread::spawn(move || {
                serve_http(&listener, &node_name, &stop)
            }));
        }
        Ok(backend)
    }

    /// The bound UDP address (with the real port when 0 was asked).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Blocks until the backend is stopped from another thread (never, for the CLI).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The UDP reply to `request`: the node name, a line break and the echoed request.
pub fn udp_reply(node_name: &str, request: &[u8]) -> Vec<u8> {
    let echo = request.get(..ECHO_BYTES_MAX).unwrap_or(request);
    let mut reply = Vec::with_capacity(node_name.len() + 1 + echo.len());
    reply.extend_from_slice(node_name.as_bytes());
    reply.push(b'\n');
    reply.extend_from_slice(echo);
    reply
}

/// The HTTP response to a request head (everything up to the blank line).
pub fn http_response(node_name: &str, head: &[u8]) -> Vec<u8> {
    let (status, body) = if head.starts_with(b"GET ") {
        ("200 OK", format!("{node_name}\n"))
    } else if head.is_empty() || !head.windows(4).any(|window| window == b"\r\n\r\n") {
        ("400 Bad Request", "bad request\n".to_owned())
    } else {
        ("405 Method Not Allowed", "only GET\n".to_owned())
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nX-Ironlb-Node: {node_name}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn wildcard_addrs(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
    ]
}

fn bind_udp(port: u16) -> Result<UdpSocket, BackendError> {
    // `[::]` is dual-stack on Linux (bindv6only=0); `0.0.0.0` is the fallback without IPv6.
    let [v6, v4] = wildcard_addrs(port);
    UdpSocket::bind(v6)
        .or_else(|_| UdpSocket::bind(v4))
        .map_err(|source| BackendError::Bind {
            protocol: "udp",
            port,
            source,
        })
}

fn bind_tcp(port: u16) -> Result<TcpListener, BackendError> {
    let [v6, v4] = wildcard_addrs(port);
    TcpListener::bind(v6)
        .or_else(|_| TcpListener::bind(v4))
        .map_err(|source| BackendError::Bind {
            protocol: "http",
            port,
            source,
        })
}

fn serve_udp(socket: &UdpSocket, node_name: &str, stop: &AtomicBool) {
    let mut buffer = [0_u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((length, peer)) => {
                let request = buffer.get(..length).unwrap_or_default();
                if let Err(error) = socket.send_to(&udp_reply(node_name, request), peer) {
                    tracing::debug!(%peer, %error, "backend udp reply failed");
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => {
                tracing::debug!(%error, "backend udp receive failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn serve_http(listener: &TcpListener, node_name: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let node_name = node_name.to_owned();
                std::thread::spawn(move || answer_http(stream, &node_name));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => {
                tracing::debug!(%error, "backend http accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn answer_http(mut stream: TcpStream, node_name: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(HTTP_READ_TIMEOUT));
    let mut head = Vec::new();
    let mut buffer = [0_u8; 1024];
    while head.len() < HTTP_HEAD_BYTES_MAX && !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(length) => head.extend_from_slice(buffer.get(..length).unwrap_or_default()),
        }
    }
    let _ = stream.write_all(&http_response(node_name, &head));
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_reply_is_name_line_then_echo() {
        let table: &[(&str, &[u8], &[u8])] = &[
            ("node-a", b"probe 1 7", b"node-a\nprobe 1 7"),
            ("node-b", b"", b"node-b\n"),
        ];
        for (node, request, want) in table {
            assert_eq!(udp_reply(node, request), *want, "node {node}");
        }
        let long = vec![b'x'; ECHO_BYTES_MAX + 100];
        assert_eq!(udp_reply("n", &long).len(), 2 + ECHO_BYTES_MAX);
    }

    #[test]
    fn http_response_by_method() {
        let table: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"POST / HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
            (b"GE", "HTTP/1.1 400"),
            (b"", "HTTP/1.1 400"),
        ];
        for (head, want) in table {
            let response = String::from_utf8(http_response("node-a", head)).unwrap();
            assert!(response.starts_with(want), "{head:?} -> {response}");
        }
        let ok = String::from_utf8(http_response("node-a", b"GET / HTTP/1.0\r\n\r\n")).unwrap();
        assert!(ok.ends_with("\r\n\r\nnode-a\n"), "{ok}");
    }

    #[test]
    fn rejects_bad_node_names() {
        for name in ["", "a\nb"] {
            let config = BackendConfig {
                node_name: name.to_owned(),
                udp_port: Some(0),
                http_port: None,
            };
            assert!(matches!(
                Backend::start(&config),
                Err(BackendError::BadNodeName { .. })
            ));
        }
    }

    #[test]
    fn serves_udp_and_http_on_loopback() {
        let backend = Backend::start(&BackendConfig {
            node_name: "node-a".to_owned(),
            udp_port: Some(0),
            http_port: Some(0),
        })
        .unwrap();
        let udp_port = backend.udp_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"hello", ("127.0.0.1", udp_port)).unwrap();
        let mut buffer = [0_u8; 64];
        let (length, _) = client.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"node-a\nhello");

        let http_port = backend.http_addr().unwrap().port();
        let mut stream = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.ends_with("node-a\n"), "{response}");
        drop(backend);
    }
}
