//! Shared test helpers: a stand-in with ironlb's CRDs, a kube-rs client, a raw HTTP client
//! and a kubectl runner.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ironlb_apiserver::{Config, Server, ServerHandle};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// ironlb's metallb.io CRDs as JSON.
pub fn metallb_crds() -> Vec<Value> {
    ironlb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap_or(Value::Null))
        .collect()
}

/// A stand-in with the metallb.io CRDs registered.
pub async fn start() -> ServerHandle {
    start_with(Config {
        crds: metallb_crds(),
        ..Config::default()
    })
    .await
}

/// A stand-in with a custom config.
pub async fn start_with(config: Config) -> ServerHandle {
    match Server::start(config).await {
        Ok(handle) => handle,
        Err(error) => panic!("stand-in did not start: {error}"),
    }
}

/// A kube-rs client for a stand-in.
pub fn client(handle: &ServerHandle) -> kube::Client {
    let url = handle
        .url()
        .parse()
        .unwrap_or_else(|error| panic!("bad url: {error}"));
    let mut config = kube::Config::new(url);
    config.default_namespace = "default".into();
    config.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(config).unwrap_or_else(|error| panic!("client: {error}"))
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close`, reading the whole answer.
pub async fn raw(
    handle: &ServerHandle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut stream = TcpStream::connect(handle.addr())
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        handle.addr(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    parse_response(&answer)
}

fn parse_response(answer: &[u8]) -> Raw {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = answer.get(split + 4..).unwrap_or_default().to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let Some(chunk) = data.get(start..start + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        data = data.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// A watch stream read line by line.
pub struct WatchLines {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    pub status: u16,
}

impl WatchLines {
    /// Opens `GET path` and reads the response head.
    pub async fn open(handle: &ServerHandle, path: &str, accept: Option<&str>) -> Self {
        let mut stream = TcpStream::connect(handle.addr())
            .await
            .unwrap_or_else(|error| panic!("connect: {error}"));
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}\r\n");
        let _ = stream.write_all(request.as_bytes()).await;
        let mut reader = BufReader::new(stream);
        let mut status = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        Self {
            reader,
            pending: Vec::new(),
            status,
        }
    }

    /// The next event line as JSON, or None at the end of the stream / after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(position) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=position).collect();
                return serde_json::from_slice(&line).ok();
            }
            // Read one chunk: size line, data, CRLF.
            let mut size_line = String::new();
            let read =
                tokio::time::timeout_at(deadline, self.reader.read_line(&mut size_line)).await;
            let Ok(Ok(count)) = read else { return None };
            if count == 0 {
                return None;
            }
            let size = usize::from_str_radix(size_line.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            if tokio::time::timeout_at(deadline, self.reader.read_exact(&mut chunk))
                .await
                .ok()?
                .is_err()
            {
                return None;
            }
            chunk.truncate(size);
            self.pending.extend(chunk);
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A kubectl runner with its own kubeconfig and a fresh cache dir.
pub struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

/// kubectl's result.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// `None` (with a printed reason) when kubectl is not installed.
    pub fn new(handle: &ServerHandle) -> Option<Self> {
        if Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
        {
            eprintln!("skipping: kubectl is not installed (scripts/install-deps.sh installs it)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "ironlb-apiserver-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::create_dir_all(&dir);
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, handle.kubeconfig())
            .unwrap_or_else(|error| panic!("write kubeconfig: {error}"));
        Some(Self { dir, kubeconfig })
    }

    /// Writes a file in the runner's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("write {name}: {error}"));
        path.display().to_string()
    }

    /// Runs kubectl with a fresh cache dir (blocking; call through `run`).
    pub fn command(&self, args: &[&str]) -> Command {
        let cache = self
            .dir
            .join(format!("cache-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        let mut command = Command::new("kubectl");
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .arg("--cache-dir")
            .arg(cache)
            .arg("--request-timeout=30s")
            .args(args);
        command
    }

    /// Runs kubectl off the async runtime's worker.
    pub async fn run(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|error| panic!("join: {error}"))
            .unwrap_or_else(|error| panic!("kubectl: {error}"));
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs and asserts success.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "kubectl {args:?} failed: {run:?}");
        run.stdout
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns true or 20 s pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
