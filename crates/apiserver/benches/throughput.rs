//! Throughput and latency of the stand-in: create / patch-status / get / delete of 10,000
//! Services with 100 concurrent watchers, watch delivery latency, and memory per stored object.
//!
//! Run: `cargo bench -p ironlb-apiserver --bench throughput` (prints figures; no assertions).
//! Environment: `BENCH_OBJECTS` (default 10000), `BENCH_WATCHERS` (100), `BENCH_CLIENTS` (16),
//! `BENCH_RATE` (5000: the writes per second of the paced phase).
//!
//! The create and patch-status phases run as fast as the clients can (throughput; delivery
//! latency then includes the queues of a saturated machine). A last patch-status phase is paced
//! at `BENCH_RATE` writes per second (open loop: each request leaves at its scheduled time), and
//! its delivery latency is the figure "at that load".
//!
//! Memory per object is measured with a counting global allocator: the live heap (bytes
//! allocated and not yet freed, by server and bench together) with every Service stored, minus
//! the live heap after deleting them all, both with the watch history compacted and the
//! watchers gone. What differs between the two is exactly what the store keeps for the
//! Services. RSS is printed too, but it also holds what the allocator kept after the history
//! (30,000 events) and the watch buffers were freed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_apiserver::{Config, Server, ServerHandle};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed, in the whole process.
fn live_heap_bytes() -> i64 {
    let stats = ALLOCATOR.stats();
    let allocated = i64::try_from(stats.bytes_allocated).unwrap_or(i64::MAX);
    let freed = i64::try_from(stats.bytes_deallocated).unwrap_or(i64::MAX);
    // stats_alloc counts a reallocation's growth as allocated and its shrinking as freed.
    allocated - freed
}

/// A keep-alive HTTP/1.1 connection for JSON requests.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    async fn open(handle: &ServerHandle) -> Self {
        let stream = TcpStream::connect(handle.addr())
            .await
            .unwrap_or_else(|error| panic!("connect: {error}"));
        let _ = stream.set_nodelay(true);
        Self {
            reader: BufReader::new(stream),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
        let stream = self.reader.get_mut();
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let mut status = 0;
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return (0, Vec::new());
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        let _ = self.reader.read_exact(&mut body).await;
        (status, body)
    }
}

fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) in seconds, of the whole process (server, clients and watch
/// readers together) and of the server's own runtime threads (named [`SERVER_THREADS`]).
/// Unlike wall-clock rates these do not depend on what else the machine runs.
#[derive(Clone, Copy, Default)]
struct Cpu {
    process_s: f64,
    server_s: f64,
}

/// The name of the server runtime's threads.
const SERVER_THREADS: &str = "apiserver";

impl Cpu {
    fn now() -> Self {
        let process_s = stat_cpu_seconds("/proc/self/stat").map_or(0.0, |(_, s)| s);
        let mut server_s = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let path = task.path().join("stat");
                if let Some((name, seconds)) = stat_cpu_seconds(&path.to_string_lossy()) {
                    if name == SERVER_THREADS {
                        server_s += seconds;
                    }
                }
            }
        }
        Self {
            process_s,
            server_s,
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            process_s: self.process_s - earlier.process_s,
            server_s: self.server_s - earlier.server_s,
        }
    }
}

/// The command name and utime + stime of a `/proc/…/stat` file.
fn stat_cpu_seconds(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map(|(_, name)| name.to_string())?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SC_CLK_TCK is 100 on Linux.
    Some((name, (ticks(11) + ticks(12)) / 100.0))
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads a watch stream until it ends, returning `(sent, now - sent)` in µs since `origin` for
/// every event carrying `bench/sent-us`, so that deliveries can be told apart by the phase that
/// sent them.
async fn watcher(
    handle: &ServerHandle,
    origin: Instant,
    received: Arc<AtomicU64>,
) -> Vec<(u64, u64)> {
    let mut stream = TcpStream::connect(handle.addr())
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"));
    let request = "GET /api/v1/namespaces/bench/services?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: bench\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut reader = BufReader::new(stream);
    let mut deliveries = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Chunked framing: every event is one chunk ending in a newline; scanning lines works
        // because chunk-size lines never contain the marker, and `0` alone is the last chunk.
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) if line == b"0\r\n" => break,
            Ok(_) => {}
        }
        let Some(position) = find(&line, b"\"bench/sent-us\":\"") else {
            continue;
        };
        let digits: String = line[position + 17..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|b| char::from(*b))
            .collect();
        if let Ok(sent) = digits.parse::<u64>() {
            deliveries.push((sent, micros_since(origin).saturating_sub(sent)));
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    deliveries
}

/// Delivery latencies of the events sent within `window` (µs since the bench's origin), sorted.
fn delivered_within(deliveries: &[(u64, u64)], window: (u64, u64)) -> Vec<u64> {
    let mut latencies: Vec<u64> = deliveries
        .iter()
        .filter(|(sent, _)| (window.0..=window.1).contains(sent))
        .map(|(_, latency)| *latency)
        .collect();
    latencies.sort_unstable();
    latencies
}

fn print_delivery(what: &str, watchers: usize, latencies: &[u64]) {
    println!(
        "watch delivery, {what} ({} events to {watchers} watchers): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        percentile(latencies, 0.50) as f64 / 1000.0,
        percentile(latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// Substring search (SIMD, so the 100 in-process readers take as little as possible of the
/// 2 cores the server runs on).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

struct Phase {
    name: &'static str,
    /// When the phase started and ended, in µs since the bench's origin.
    window_us: (u64, u64),
    elapsed: Duration,
    cpu: Cpu,
    /// Response body bytes received.
    body_bytes: usize,
    latencies_us: Vec<u64>,
    errors: usize,
}

async fn run_phase<F>(
    name: &'static str,
    handle: &ServerHandle,
    objects: usize,
    clients: usize,
    origin: Instant,
    rate: Option<f64>,
    make: F,
) -> Phase
where
    F: Fn(usize, u64) -> (&'static str, String, &'static str, Vec<u8>) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let started_us = micros_since(origin);
    let cpu_started = Cpu::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut connection = Connection::open(handle).await;
        let make = make.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut body_bytes = 0;
            loop {
                let index =
                    usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                if index >= objects {
                    break;
                }
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(index as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let (method, path, content_type, body) = make(index, micros_since(origin));
                let sent = Instant::now();
                let (status, response) =
                    connection.request(method, &path, content_type, &body).await;
                body_bytes += response.len();
                latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                if !(200..300).contains(&status) {
                    errors += 1;
                }
            }
            (latencies, errors, body_bytes)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut body_bytes = 0;
    for task in tasks {
        if let Ok((mut latencies, task_errors, task_bytes)) = task.await {
            latencies_us.append(&mut latencies);
            errors += task_errors;
            body_bytes += task_bytes;
        }
    }
    latencies_us.sort_unstable();
    Phase {
        name,
        window_us: (started_us, micros_since(origin)),
        elapsed: started.elapsed(),
        cpu: Cpu::now().since(cpu_started),
        body_bytes,
        latencies_us,
        errors,
    }
}

fn report(phase: &Phase, objects: usize) {
    let rate = objects as f64 / phase.elapsed.as_secs_f64();
    println!(
        "{:<13} {:>8.0} req/s   latency p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms   errors {}   cpu {:.0} µs/req (server {:.0})",
        phase.name,
        rate,
        percentile(&phase.latencies_us, 0.50) as f64 / 1000.0,
        percentile(&phase.latencies_us, 0.99) as f64 / 1000.0,
        phase.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        phase.errors,
        phase.cpu.process_s * 1e6 / objects as f64,
        phase.cpu.server_s * 1e6 / objects as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let objects = env_usize("BENCH_OBJECTS", 10_000);
    let watchers = env_usize("BENCH_WATCHERS", 100);
    let clients = env_usize("BENCH_CLIENTS", 16);
    let rate = env_usize("BENCH_RATE", 5_000) as f64;
    let baseline_kib = rss_kib();
    // The server runs on a runtime of its own, so its threads' CPU time can be told apart from
    // the clients' and the watch readers'; both get as many workers as there are cores.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    let config = Config {
        history_events: objects * 3,
        ..Config::default()
    };
    let handle = server_runtime
        .block_on(Server::start(config))
        .unwrap_or_else(|error| panic!("start: {error}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench")
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(async move {
        let mut setup = Connection::open(&handle).await;
        let (status, _) = setup.request("POST", "/api/v1/namespaces", "application/json", br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}"#).await;
        assert_eq!(status, 201, "namespace");
        let started_kib = rss_kib();
        let origin = Instant::now();
        let received = Arc::new(AtomicU64::new(0));
        let handle = Arc::new(handle);
        let mut watch_tasks = Vec::new();
        for _ in 0..watchers {
            let handle = handle.clone();
            let received = received.clone();
            watch_tasks.push(tokio::spawn(async move { watcher(&handle, origin, received).await }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("ironlb-apiserver bench: {objects} Services, {watchers} watchers, {clients} client connections, {} CPUs", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

        let create = run_phase("create", &handle, objects, clients, origin, None, |index, now_us| {
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{index}","labels":{{"app":"bench"}},"annotations":{{"bench/sent-us":"{now_us}"}}}},"spec":{{"ports":[{{"port":80,"targetPort":8080}}],"selector":{{"app":"bench"}}}}}}"#
            );
            ("POST", "/api/v1/namespaces/bench/services".to_string(), "application/json", body.into_bytes())
        })
        .await;
        report(&create, objects);

        let patch = run_phase("patch-status", &handle, objects, clients, origin, None, |index, now_us| {
            let body = format!(
                r#"{{"metadata":{{"annotations":{{"bench/sent-us":"{now_us}"}}}},"status":{{"loadBalancer":{{"ingress":[{{"ip":"192.0.2.{}"}}]}}}}}}"#,
                index % 250 + 1
            );
            ("PATCH", format!("/api/v1/namespaces/bench/services/svc-{index}/status"), "application/merge-patch+json", body.into_bytes())
        })
        .await;
        report(&patch, objects);

        let get = run_phase("get", &handle, objects, clients, origin, None, |index, _| ("GET", format!("/api/v1/namespaces/bench/services/svc-{index}"), "application/json", Vec::new())).await;
        report(&get, objects);

        let writes = (2 * objects) as f64 / (create.elapsed + patch.elapsed).as_secs_f64();
        let write_cpu_us = (create.cpu.process_s + patch.cpu.process_s) * 1e6 / (2 * objects) as f64;
        let server_cpu_us = (create.cpu.server_s + patch.cpu.server_s) * 1e6 / (2 * objects) as f64;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        println!(
            "writes overall: {writes:.0} /s (create + patch-status) with the clients and the {watchers} watch readers on the same cores; CPU per write {write_cpu_us:.0} µs in all, {server_cpu_us:.0} µs in the server (delivery to {watchers} watchers included), i.e. {:.0} writes/s if the server had the {cores} cores to itself",
            cores * 1e6 / server_cpu_us.max(1.0)
        );

        let paced = run_phase("patch-paced", &handle, objects, clients, origin, Some(rate), |index, now_us| {
            let body = format!(
                r#"{{"metadata":{{"annotations":{{"bench/sent-us":"{now_us}"}}}},"status":{{"loadBalancer":{{"ingress":[{{"ip":"198.51.100.{}"}}]}}}}}}"#,
                index % 250 + 1
            );
            ("PATCH", format!("/api/v1/namespaces/bench/services/svc-{index}/status"), "application/merge-patch+json", body.into_bytes())
        })
        .await;
        report(&paced, objects);
        // Let the watchers drain, end their streams, and sort the deliveries by sending phase.
        let expected = u64::try_from(objects * 3 * watchers).unwrap_or(u64::MAX);
        let drain_started = Instant::now();
        while received.load(Ordering::Relaxed) < expected && drain_started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handle.close_watches();
        let mut deliveries = Vec::new();
        for task in watch_tasks {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(mut watched)) => deliveries.append(&mut watched),
                _ => println!("a watcher did not end its stream within 10 s; its deliveries are left out"),
            }
        }
        let unpaced = delivered_within(&deliveries, (create.window_us.0, patch.window_us.1));
        print_delivery("create + patch-status as fast as possible", watchers, &unpaced);
        print_delivery(&format!("patch-status paced at {rate:.0} writes/s"), watchers, &delivered_within(&deliveries, paced.window_us));
        drop((deliveries, unpaced));
        handle.compact();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let loaded_kib = rss_kib();
        let loaded_heap = live_heap_bytes();
        let stored_objects = handle.object_count();

        let delete = run_phase("delete", &handle, objects, clients, origin, None, |index, _| ("DELETE", format!("/api/v1/namespaces/bench/services/svc-{index}"), "application/json", Vec::new())).await;
        report(&delete, objects);
        handle.compact();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let emptied_heap = live_heap_bytes();
        let per_object_heap = (loaded_heap - emptied_heap) as f64 / objects as f64;
        let per_object_rss = (loaded_kib.saturating_sub(started_kib) as f64 * 1024.0) / objects as f64;
        println!(
            "memory: live heap {:.1} MiB with {stored_objects} objects, {:.1} MiB after deleting the {objects} Services (history compacted both times): {per_object_heap:.0} bytes per stored Service",
            loaded_heap as f64 / 1_048_576.0,
            emptied_heap as f64 / 1_048_576.0
        );
        println!(
            "memory: RSS {baseline_kib} KiB at start, {started_kib} KiB serving, {loaded_kib} KiB with {stored_objects} objects: {per_object_rss:.0} bytes per Service (includes what the allocator kept of the freed history and watch buffers)"
        );
        // What a GET returns is the stored JSON byte for byte (built-in kinds are stored in the
        // form they are served in); the store adds the key strings and a small header.
        println!(
            "stored form: {:.0} bytes of JSON per Service (the GET body), plus its key and header",
            get.body_bytes as f64 / objects as f64
        );
    });
}
