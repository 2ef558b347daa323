//! `ironlb config check` and `ironlb convert-config`, run as the built binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ironlb(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ironlb runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("stdin accepts the input");
    }
    child.wait_with_output().expect("ironlb finishes")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironlb-config-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file");
    path
}

#[test]
fn every_example_is_valid() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples()).expect("examples/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        count += 1;
        let output = ironlb(
            &["config", "check", path.to_str().expect("utf-8 path")],
            None,
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stderr(&output)
        );
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("valid: "));
    }
    assert!(count >= 6, "expected the six examples, found {count}");
}

#[test]
fn a_directory_is_read() {
    let output = ironlb(
        &["config", "check", examples().to_str().expect("utf-8 path")],
        None,
    );
    // The examples together are not one configuration (the legacy ConfigMap is ignored once
    // CRs exist, pools of different files do not overlap), so the directory is valid too.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("ConfigMap/config: data.config: ignored"));
}

#[test]
fn invalid_configuration_exits_1_with_one_problem_per_line() {
    let input = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\nspec: {addresses: [10.0.0.0/24]}\n---\n\
                 apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b, namespace: metallb-system}\nspec: {addresses: [10.0.0.128/25]}\n---\n\
                 apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\nspec: {myASN: 0, peerASN: 1, peerAddress: 10.9.9.9}\n";
    let output = ironlb(&["config", "check", "-"], Some(input));
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "BGPPeer/p: spec.myASN: missing local ASN",
            "IPAddressPool/b: spec.addresses[0]: CIDR 10.0.0.128/25 overlaps with already defined CIDR 10.0.0.0/24 in pool \"a\"",
        ]
    );
}

#[test]
fn unreadable_input_exits_2_and_names_it() {
    let cases = [
        (
            "missing file",
            PathBuf::from("/nonexistent/ironlb-pools.yaml"),
            "/nonexistent/ironlb-pools.yaml",
        ),
        (
            "not yaml",
            temp_file("broken.yaml", "kind: [unclosed\n"),
            "not valid YAML",
        ),
        (
            "unknown kind",
            temp_file(
                "deploy.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            ),
            "unknown kind \"Deployment\"",
        ),
    ];
    for (desc, path, want) in cases {
        let output = ironlb(
            &["config", "check", path.to_str().expect("utf-8 path")],
            None,
        );
        assert_eq!(output.status.code(), Some(2), "{desc}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(want),
            "{desc}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn help_explains_exit_codes() {
    let output = ironlb(&["config", "check", "--help"], None);
    let text = String::from_utf8_lossy(&output.stdout);
    for want in [
        "Exit status",
        "Kind/name: field: message",
        "legacy ConfigMap",
        "-` for standard input",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn convert_config_output_is_a_valid_configuration() {
    let legacy = examples().join("legacy-configmap.yaml");
    let output = ironlb(
        &["convert-config", legacy.to_str().expect("utf-8 path")],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    for want in [
        "kind: IPAddressPool",
        "name: default-l2",
        "name: l2advertisement1",
        "name: bgpadvertisement1",
        "name: bgpadvertisement2",
        "apiVersion: metallb.io/v1beta2",
        "name: peer1",
        "holdTime: 2m0s",
        "bfdProfile: full-bfd",
        "name: communities",
        "kind: BFDProfile",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }
    let check = ironlb(&["config", "check", "-"], Some(&yaml));
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
}

#[test]
fn convert_config_without_a_config_map_exits_2() {
    let output = ironlb(
        &[
            "convert-config",
            examples().join("bgp.yaml").to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no ConfigMap named \"config\""));
}
