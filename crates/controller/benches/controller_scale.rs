//! Scale benchmark: 10,000 LoadBalancer Services across 20 pools against the API stand-in.
//!
//! Prints the cold-start time (controller start → every Service has an IP), the restart
//! re-convergence time (start → `/readyz`, with every Service already assigned) with the number
//! of IPs that changed and of status writes, API requests per Service, and the controller's
//! peak RSS. The controller runs in a child process (this same binary, re-executed) so its RSS
//! is its own.
//!
//! `cargo bench -p ironlb-controller --bench controller_scale` (`IRONLB_BENCH_SERVICES` and
//! `IRONLB_BENCH_POOLS` change the sizes).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ironlb_apiserver::{Server, ServerHandle};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;

const CHILD_ENV: &str = "IRONLB_BENCH_CONTROLLER_KUBECONFIG";
const WRAPPER_ENV: &str = "IRONLB_BENCH_WRAPPER";
const NAMESPACE: &str = "bench";
const CREATES_IN_FLIGHT: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(path) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(path));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: only run
    // the full benchmark when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        println!("controller_scale: run with `cargo bench` to measure");
        return;
    }
    runtime.block_on(parent());
}

async fn client_for(kubeconfig: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("client")
}

/// The controller process: prints its health address, then runs until killed.
async fn child(kubeconfig_path: String) {
    let filter = std::env::var("IRONLB_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    let text = std::fs::read_to_string(&kubeconfig_path).expect("kubeconfig file");
    let client = client_for(&text).await;
    let options = ironlb_controller::Options {
        health_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ironlb_controller::Options::default()
    };
    let mut running = ironlb_controller::start(client, options)
        .await
        .expect("controller starts");
    println!("health {}", running.health_addr().expect("health address"));
    running.wait().await;
}

struct ControllerProcess {
    child: Child,
    health: SocketAddr,
}

impl ControllerProcess {
    fn spawn(kubeconfig_path: &str) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        // `IRONLB_BENCH_WRAPPER="heaptrack -o /tmp/ctl"` runs the controller under a profiler
        // (the RSS figures are then the wrapper's, not the controller's).
        let wrapper = std::env::var(WRAPPER_ENV).unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        // Its own process group, so that a wrapper's children are killed with it.
        let mut child = command
            .process_group(0)
            .env(CHILD_ENV, kubeconfig_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn controller");
        let stdout = child.stdout.take().expect("child stdout");
        // A wrapper may print lines of its own first.
        let mut lines = BufReader::new(stdout).lines();
        let health = loop {
            let line = lines
                .next()
                .expect("controller printed its health address")
                .expect("health line");
            if let Some(address) = line.trim().strip_prefix("health ") {
                break address.parse().expect("health address");
            }
        };
        // Keep draining the child's stdout so a chatty wrapper never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, health }
    }

    /// Peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system) the controller has used, in seconds: unlike wall-clock
    /// times, it does not depend on what else the machine runs.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime (fields 14 and 15) in SC_CLK_TCK = 100 ticks per second.
        (ticks(11) + ticks(12)) / 100.0
    }

    async fn ready(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.health).await else {
            return false;
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response.starts_with("HTTP/1.1 200")
    }

    fn kill(self) {
        drop(self);
    }
}

impl Drop for ControllerProcess {
    /// Kills the controller also when the benchmark fails.
    fn drop(&mut self) {
        if std::env::var_os(WRAPPER_ENV).is_some() {
            // SIGTERM to the whole group lets a profiler write its data.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ingress(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|e| e.ip.clone()).collect())
        .unwrap_or_default()
}

/// Watches the services and reports, after every change, how many have an ingress IP.
fn assigned_count(services: Api<Service>) -> tokio::sync::mpsc::UnboundedReceiver<usize> {
    use kube::runtime::watcher::Event;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let stream = kube::runtime::watcher(services, kube::runtime::watcher::Config::default());
        futures::pin_mut!(stream);
        let mut has_ip: BTreeMap<String, bool> = BTreeMap::new();
        let mut listing: BTreeMap<String, bool> = BTreeMap::new();
        let mut count = 0;
        let set = |map: &mut BTreeMap<String, bool>, count: &mut usize, s: &Service, v: bool| {
            let name = s.metadata.name.clone().unwrap_or_default();
            if map.insert(name, v) == Some(true) {
                *count -= 1;
            }
            if v {
                *count += 1;
            }
        };
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => listing.clear(),
                Ok(Event::InitApply(s)) => {
                    let mut ignored = 0;
                    set(&mut listing, &mut ignored, &s, !ingress(&s).is_empty());
                }
                Ok(Event::InitDone) => {
                    has_ip = std::mem::take(&mut listing);
                    count = has_ip.values().filter(|v| **v).count();
                }
                Ok(Event::Apply(s)) => set(&mut has_ip, &mut count, &s, !ingress(&s).is_empty()),
                Ok(Event::Delete(s)) => set(&mut has_ip, &mut count, &s, false),
                Err(_) => continue,
            }
            if tx.send(count).is_err() {
                return;
            }
        }
    });
    rx
}

async fn snapshot(services: &Api<Service>) -> BTreeMap<String, Vec<String>> {
    let list = services
        .list(&ListParams::default())
        .await
        .expect("list services");
    list.items
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), ingress(s)))
        .collect()
}

/// Requests made by the controller: everything except this harness's namespaced lists.
fn controller_requests(server: &ServerHandle) -> usize {
    let own = format!("/api/v1/namespaces/{NAMESPACE}/services");
    server
        .request_log()
        .iter()
        .filter(|r| !(r.method == "GET" && r.path == own))
        .count()
}

fn status_writes(server: &ServerHandle) -> usize {
    server
        .request_log()
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with("/status") && r.path.contains("/services/")
        })
        .count()
}

async fn parent() {
    let services_total = env_usize("IRONLB_BENCH_SERVICES", 10_000);
    let pools_total = env_usize("IRONLB_BENCH_POOLS", 20);
    let crds = ironlb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).expect("crd json"))
        .collect();
    let server = Server::start(ironlb_apiserver::Config {
        crds,
        history_events: 100_000,
        ..ironlb_apiserver::Config::default()
    })
    .await
    .expect("stand-in");
    let kubeconfig_path =
        std::env::temp_dir().join(format!("ironlb-bench-{}.kubeconfig", std::process::id()));
    std::fs::write(&kubeconfig_path, server.kubeconfig()).expect("write kubeconfig");
    let kubeconfig_path = kubeconfig_path.to_string_lossy().into_owned();
    let client = client_for(&server.kubeconfig()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["metallb-system", NAMESPACE] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .expect("namespace");
    }
    let pools: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "metallb-system",
        &ironlb_controller::publish::ip_address_pool_resource(),
    );
    // Each pool is a /22: 1,024 addresses, 20,480 in all for 10,000 services. Automatic
    // assignment fills the pools in name order (as MetalLB's), so a pool that services pin
    // must not take automatic assignments too, or it fills up before the pinned services get
    // theirs and they never get an IP (at 10,000 services pool-00 held 1,024 automatic ones).
    // The first half of the pools takes automatic assignments, the second half pinned ones.
    let auto_pools = (pools_total / 2).max(1);
    for index in 0..pools_total {
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": format!("pool-{index:02}"), "namespace": "metallb-system"},
            "spec": {
                "addresses": [format!("10.{}.{}.0/22", 100 + index / 64, (index % 64) * 4)],
                "autoAssign": index < auto_pools,
            },
        }))
        .expect("pool");
        pools
            .create(&PostParams::default(), &object)
            .await
            .expect("create pool");
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    futures::stream::iter(0..services_total)
        .map(|index| {
            let services = services.clone();
            async move {
                let mut body = json!({
                    "metadata": {"name": format!("svc-{index:05}")},
                    // 10,000 services do not fit the 2,768 node ports.
                    "spec": {
                        "type": "LoadBalancer",
                        "allocateLoadBalancerNodePorts": false,
                        "ports": [{"port": 80, "protocol": "TCP"}],
                    },
                });
                // A third of the services pin one of the pinned-only pools, the rest are
                // spread automatically over the others.
                let pinned_pools = pools_total.saturating_sub(auto_pools);
                if index % 3 == 0 && pinned_pools > 0 {
                    let pool = auto_pools + index % pinned_pools;
                    body["metadata"]["annotations"] =
                        json!({"metallb.io/address-pool": format!("pool-{pool:02}")});
                }
                let service: Service = serde_json::from_value(body).expect("service");
                services
                    .create(&PostParams::default(), &service)
                    .await
                    .expect("create service");
            }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    println!(
        "setup: {services_total} services across {pools_total} pools created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Cold start. Completion is seen through a watch (one stream, each status change once)
    // rather than by listing all services repeatedly, which would load the stand-in that the
    // controller is talking to.
    let mut assigned = assigned_count(services.clone());
    server.clear_request_log();
    let started = Instant::now();
    let controller = ControllerProcess::spawn(&kubeconfig_path);
    let mut count = 0;
    while count < services_total {
        // No progress for 60 s: a stall, not slowness. Name what is missing rather than wait.
        match tokio::time::timeout(Duration::from_secs(60), assigned.recv()).await {
            Ok(Some(now)) => count = now,
            Ok(None) => panic!("assignment watch ended"),
            Err(_) => {
                let missing: Vec<String> = snapshot(&services)
                    .await
                    .into_iter()
                    .filter(|(_, ips)| ips.is_empty())
                    .map(|(name, _)| name)
                    .collect();
                panic!(
                    "cold start stalled at {count} of {services_total} services with an IP; without one ({}): {:?} (see their Events)",
                    missing.len(),
                    missing.iter().take(20).collect::<Vec<_>>()
                );
            }
        }
    }
    let cold = started.elapsed();
    drop(assigned);
    // Let trailing writes (pool status, events) finish before counting requests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cold_requests = controller_requests(&server);
    let cold_writes = status_writes(&server);
    let cold_rss_kib = controller.peak_rss_kib();
    let cold_cpu_s = controller.cpu_seconds();
    let before = snapshot(&services).await;
    controller.kill();

    // Restart.
    server.clear_request_log();
    let started = Instant::now();
    let controller = ControllerProcess::spawn(&kubeconfig_path);
    while !controller.ready().await {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "restart did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = snapshot(&services).await;
    let changed = before
        .iter()
        .filter(|(name, ips)| after.get(*name) != Some(*ips))
        .count();
    let restart_requests = controller_requests(&server);
    let restart_writes = status_writes(&server);
    let restart_rss_kib = controller.peak_rss_kib();
    let restart_cpu_s = controller.cpu_seconds();
    controller.kill();
    let _ = std::fs::remove_file(&kubeconfig_path);

    let per_service = |requests: usize| requests as f64 / services_total as f64;
    println!(
        "cold start: {:.2} s until all {services_total} services had an IP (target ≤ 10 s)",
        cold.as_secs_f64()
    );
    println!(
        "cold start: {cold_requests} API requests ({:.2} per service), {cold_writes} status writes",
        per_service(cold_requests)
    );
    println!(
        "cold start: controller peak RSS {:.1} MiB (target ≤ 64 MiB), controller CPU {cold_cpu_s:.2} s (including 2 s idle after convergence)",
        cold_rss_kib as f64 / 1024.0
    );
    println!(
        "restart: {:.2} s until ready (target ≤ 5 s)",
        restart.as_secs_f64()
    );
    println!("restart: {changed} IPs changed (must be 0), {restart_writes} status writes");
    println!(
        "restart: {restart_requests} API requests ({:.2} per service)",
        per_service(restart_requests)
    );
    println!(
        "restart: controller peak RSS {:.1} MiB, controller CPU {restart_cpu_s:.2} s",
        restart_rss_kib as f64 / 1024.0
    );
}
