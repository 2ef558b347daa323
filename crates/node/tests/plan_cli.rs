//! `ironlb plan` end to end: the binary on small manifests under `tests/fixtures/plan/`.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(name)
}

fn ironlb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .output()
        .expect("the ironlb binary runs")
}

fn plan_json(name: &str) -> Value {
    let path = fixture(name);
    let output = ironlb(&["plan", path.to_str().unwrap(), "-o", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn basic_plan_in_input_order_with_existing_first() {
    let got = plan_json("basic.yaml");
    let want = json!([
        {"service": "shop/web", "ips": ["192.168.10.0"], "pool": "default"},
        {"service": "shop/old", "ips": ["192.168.10.1"], "pool": "default"},
        {"service": "kube-system/dns-tcp", "ips": ["192.168.10.2"], "pool": "default"},
        {"service": "kube-system/dns-udp", "ips": ["192.168.10.2"], "pool": "default"},
        {"service": "shop/api", "ips": ["192.168.10.3"], "pool": "default"},
        {"service": "shop/one-too-many", "ips": [], "pool": null, "error": "no available IPs"},
    ]);
    assert_eq!(got, want);
}

#[test]
fn pinned_pools_annotations_and_dual_stack() {
    let got = plan_json("pinned.yaml");
    let want = json!([
        {"service": "team-a/a1", "ips": ["10.1.1.0"], "pool": "team-a-first"},
        {"service": "team-a/a2", "ips": ["10.1.2.0"], "pool": "team-a-second"},
        {"service": "team-a/a3", "ips": ["10.0.0.0"], "pool": "general"},
        {"service": "shop/shiny", "ips": ["10.2.0.0"], "pool": "gold"},
        {"service": "shop/paid", "ips": ["203.0.113.0"], "pool": "expensive"},
        {"service": "shop/fixed", "ips": ["203.0.113.3"], "pool": "expensive"},
        {"service": "shop/both", "ips": ["10.3.0.0", "fd00::"], "pool": "dual"},
        {
            "service": "shop/conflict", "ips": [], "pool": null,
            "error": "Service/shop/conflict: spec.loadBalancerIP: service can not have both metallb.io/loadBalancerIPs and svc.Spec.LoadBalancerIP"
        },
    ]);
    assert_eq!(got, want);
}

#[test]
fn text_output_is_a_table() {
    let path = fixture("basic.yaml");
    let output = ironlb(&["plan", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SERVICE"), "{text}");
    assert!(
        lines[0].contains("IPS") && lines[0].contains("POOL"),
        "{text}"
    );
    assert_eq!(lines.len(), 7, "header plus six services: {text}");
    assert!(
        lines[1].starts_with("shop/web") && lines[1].contains("192.168.10.0"),
        "{text}"
    );
    assert!(lines[6].contains("no available IPs"), "{text}");
    // The deprecated annotation is reported on stderr.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("metallb.universe.tf/allow-shared-ip"),
        "stderr: {stderr}"
    );
}

#[test]
fn invalid_config_exits_1_with_the_errors() {
    let path = fixture("invalid.yaml");
    let output = ironlb(&["plan", path.to_str().unwrap(), "-o", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("IPAddressPool/"), "stderr: {stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn unreadable_input_exits_2() {
    let missing = fixture("does-not-exist.yaml");
    let output = ironlb(&["plan", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does-not-exist.yaml"));

    let unknown = fixture("unknown-kind.yaml");
    let output = ironlb(&["plan", unknown.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Widget"));
}
