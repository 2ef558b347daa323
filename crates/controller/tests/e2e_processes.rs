//! End to end, as a user would: `ironlb apiserver` and `ironlb controller` as separate
//! processes, `kubectl apply -f` of the seed manifest, and `kubectl get svc -o jsonpath` until
//! the Services of `examples/l2-range.yaml` show their EXTERNAL-IP.
//!
//! Needs the `ironlb` binary next to the test's directory (`cargo build -p ironlb`, which
//! `cargo test --workspace` does) and `kubectl`; skips with a printed reason otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT_MAX: Duration = Duration::from_secs(90);

/// Kills the child process when the test ends, also on failure.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ironlb_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("IRONLB_BIN") {
        return Some(PathBuf::from(path));
    }
    // target/<profile>/deps/<this test> → target/<profile>/ironlb
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("ironlb");
    binary.exists().then_some(binary)
}

fn kubectl(
    kubeconfig: &Path,
    cache: &Path,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
}

/// The repository's layer-2 example: a pool, an L2Advertisement and two Services.
fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/l2-range.yaml")
}

fn service_ip(kubeconfig: &Path, cache: &Path, name: &str) -> String {
    let got = kubectl(
        kubeconfig,
        cache,
        &[
            "get",
            "svc",
            name,
            "-n",
            "default",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
    )
    .expect("kubectl runs");
    String::from_utf8_lossy(&got.stdout).trim().to_owned()
}

#[test]
fn kubectl_apply_gets_an_external_ip() {
    let Some(binary) = ironlb_binary() else {
        println!("skipped: the ironlb binary is not built (cargo build -p ironlb)");
        return;
    };
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        println!("skipped: kubectl is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ironlb-controller-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let cache = dir.join("kubectl-cache");
    let _apiserver = Killed(
        Command::new(&binary)
            .args(["apiserver", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("ironlb apiserver starts"),
    );
    let started = Instant::now();
    while !kubeconfig.exists() {
        assert!(
            started.elapsed() < WAIT_MAX,
            "apiserver wrote no kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _controller = Killed(
        Command::new(&binary)
            .args([
                "controller",
                "--port",
                "0",
                "--health-probe-port",
                "0",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .spawn()
            .expect("ironlb controller starts"),
    );
    let created = kubectl(
        &kubeconfig,
        &cache,
        &["create", "namespace", "metallb-system"],
    )
    .expect("kubectl runs");
    assert!(
        created.status.success(),
        "kubectl create namespace failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let manifest = manifest();
    let applied = kubectl(
        &kubeconfig,
        &cache,
        &["apply", "-f", manifest.to_str().unwrap()],
    )
    .expect("kubectl runs");
    assert!(
        applied.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let mut ip = String::new();
    while ip.is_empty() {
        assert!(started.elapsed() < WAIT_MAX, "no EXTERNAL-IP in time");
        std::thread::sleep(Duration::from_millis(200));
        ip = service_ip(&kubeconfig, &cache, "nginx");
    }
    assert_eq!(ip, "192.168.1.240", "the lowest address of first-pool");
    let mut pinned = String::new();
    while pinned.is_empty() {
        assert!(
            started.elapsed() < WAIT_MAX,
            "no EXTERNAL-IP for pinned in time"
        );
        std::thread::sleep(Duration::from_millis(200));
        pinned = service_ip(&kubeconfig, &cache, "pinned");
    }
    assert_eq!(pinned, "192.168.1.245", "the requested address");
    let pool = kubectl(
        &kubeconfig,
        &cache,
        &[
            "get",
            "svc",
            "nginx",
            "-n",
            "default",
            "-o",
            "jsonpath={.metadata.annotations.metallb\\.io/ip-allocated-from-pool}",
        ],
    )
    .expect("kubectl runs");
    assert_eq!(String::from_utf8_lossy(&pool.stdout).trim(), "first-pool");
    let _ = std::fs::remove_dir_all(&dir);
}
