//! Every YAML example in `docs/` is tested: applied with `kubectl apply` to the API stand-in (one
//! stand-in for the whole file, with the CRDs and Namespace of `deploy/` applied first) and
//! checked with `ironlb config check`. An example preceded by
//! `<!-- invalid: kubectl: MESSAGE -->` must be rejected by the API with MESSAGE in kubectl's
//! output; one preceded by `<!-- invalid: check: MESSAGE -->` must be accepted by the API and
//! rejected by `ironlb config check` with MESSAGE. Also: every metric `docs/metrics.md` lists is
//! registered somewhere in the code.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{read, repo_root, Kubectl};

/// What an example must do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Accepted by the API and by `ironlb config check`.
    Valid,
    /// Rejected by the API with this message.
    RejectedByApi(String),
    /// Accepted by the API, rejected by `ironlb config check` with this message.
    RejectedByCheck(String),
}

#[derive(Debug)]
struct Example {
    /// `docs/page.md:line`.
    origin: String,
    yaml: String,
    expect: Expect,
}

/// The ```yaml blocks of a Markdown text with what the comment line before each says.
fn examples(page: &str, text: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut previous = "";
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "```yaml" {
            let indent = line.len() - trimmed.len();
            let mut yaml = String::new();
            for (_, body) in lines.by_ref() {
                if body.trim() == "```" {
                    break;
                }
                yaml.push_str(body.get(indent..).unwrap_or(body.trim_start()));
                yaml.push('\n');
            }
            let expect = match previous
                .trim()
                .strip_prefix("<!-- invalid: ")
                .and_then(|rest| rest.strip_suffix(" -->"))
            {
                Some(rest) => match rest.split_once(": ") {
                    Some(("kubectl", message)) => Expect::RejectedByApi(message.to_owned()),
                    Some(("check", message)) => Expect::RejectedByCheck(message.to_owned()),
                    _ => panic!("{page}:{}: bad marker {previous:?}", index + 1),
                },
                None => Expect::Valid,
            };
            examples.push(Example {
                origin: format!("{page}:{}", index + 1),
                yaml,
                expect,
            });
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    examples
}

fn all_examples() -> Vec<Example> {
    let dir = repo_root().join("docs");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    pages
        .iter()
        .flat_map(|page| examples(page, &read(&format!("docs/{page}"))))
        .collect()
}

/// `ironlb config check FILE`: exit code and stderr.
fn config_check(path: &Path) -> (i32, String) {
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args(["config", "check"])
            .arg(path)
            .output()
    })
    .unwrap_or_else(|error| panic!("ironlb config check: {error}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_markers_are_read() {
    let text = "intro\n\n```yaml\na: 1\n```\n<!-- invalid: kubectl: spec.x: Invalid value -->\n\n```yaml\nb: 2\n```\n<!-- invalid: check: overlaps -->\n```yaml\nc: 3\n```\n```sh\nd\n```\n";
    let found = examples("t.md", text);
    let got: Vec<(&str, &Expect)> = found
        .iter()
        .map(|example| (example.yaml.as_str(), &example.expect))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a: 1\n", &Expect::Valid),
            (
                "b: 2\n",
                &Expect::RejectedByApi("spec.x: Invalid value".into())
            ),
            ("c: 3\n", &Expect::RejectedByCheck("overlaps".into())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_in_docs_behaves_as_documented() {
    let examples = all_examples();
    assert!(
        examples.len() >= 20,
        "only {} examples found",
        examples.len()
    );
    assert!(
        examples
            .iter()
            .any(|example| matches!(example.expect, Expect::RejectedByApi(_))),
        "no invalid example for the API"
    );
    if !common::kubectl_available() {
        return;
    }
    let handle = common::stand_in().await;
    let kubectl = Kubectl::new(&handle);
    for file in ["deploy/namespace.yaml", "deploy/crds/metallb.io.yaml"] {
        let path = repo_root().join(file).display().to_string();
        kubectl.ok(&["apply", "-f", &path]);
    }
    kubectl.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/ipaddresspools.metallb.io",
        "crd/bgppeers.metallb.io",
    ]);
    let mut failures = Vec::new();
    for (index, example) in examples.iter().enumerate() {
        let path = kubectl.file(&format!("example-{index}.yaml"), &example.yaml);
        let output = kubectl.run(&["apply", "-f", &path]);
        let applied = common::text(&output);
        let (check_code, check_errors) = config_check(Path::new(&path));
        if example.expect == Expect::Valid && example.yaml.contains("kind: ConfigMap") {
            // The legacy ConfigMap: `ironlb convert-config` turns it into CRs the API and the
            // controller accept (docs/configuration.md#the-legacy-configmap).
            let converted = tokio::task::block_in_place(|| {
                Command::new(env!("CARGO_BIN_EXE_ironlb"))
                    .arg("convert-config")
                    .arg(&path)
                    .output()
            })
            .unwrap_or_else(|error| panic!("ironlb convert-config: {error}"));
            let crs = String::from_utf8_lossy(&converted.stdout).into_owned();
            let converted_path = kubectl.file(&format!("example-{index}-converted.yaml"), &crs);
            let applied = kubectl.run(&["apply", "-f", &converted_path]);
            let (code, errors) = config_check(Path::new(&converted_path));
            if !converted.status.success()
                || !crs.contains("kind: IPAddressPool")
                || !applied.status.success()
                || code != 0
            {
                failures.push(format!(
                    "{}: convert-config output not accepted:\n{crs}\n{}\n{errors}",
                    example.origin,
                    common::text(&applied)
                ));
            }
        }
        match &example.expect {
            Expect::Valid => {
                if !output.status.success() {
                    failures.push(format!(
                        "{}: kubectl apply failed:\n{applied}",
                        example.origin
                    ));
                }
                if check_code != 0 {
                    failures.push(format!(
                        "{}: ironlb config check exit {check_code}:\n{check_errors}",
                        example.origin
                    ));
                }
            }
            Expect::RejectedByApi(message) => {
                if output.status.success() {
                    failures.push(format!(
                        "{}: accepted by the API, documented as rejected:\n{applied}",
                        example.origin
                    ));
                } else if !applied.contains(message.as_str()) {
                    failures.push(format!(
                        "{}: rejected, but without the documented message {message:?}:\n{applied}",
                        example.origin
                    ));
                }
            }
            Expect::RejectedByCheck(message) => {
                if !output.status.success() {
                    failures.push(format!(
                        "{}: kubectl apply failed, the API should accept it:\n{applied}",
                        example.origin
                    ));
                }
                if check_code != 1 || !check_errors.contains(message.as_str()) {
                    failures.push(format!(
                        "{}: ironlb config check exit {check_code}, documented: exit 1 with {message:?}:\n{check_errors}",
                        example.origin
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_status_output_is_documented(&kubectl);
}

/// The ```text block after `<!-- status-output -->` in docs/troubleshooting.md.
fn documented_status_output() -> String {
    let text = read("docs/troubleshooting.md");
    let after = text
        .split("<!-- status-output -->")
        .nth(1)
        .unwrap_or_else(|| panic!("no <!-- status-output --> in docs/troubleshooting.md"));
    let block = after
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("no ```text block after <!-- status-output -->"));
    block.to_owned()
}

/// Replaces the timestamp after every `since ` (it is the time the status object was written).
fn without_times(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("since ") {
            Some((before, _)) => format!("{before}since <time>"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ironlb status` prints what docs/troubleshooting.md shows for the same objects.
fn assert_status_output_is_documented(kubectl: &Kubectl) {
    let objects = kubectl.file(
        "status-objects.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: default\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 443\n---\napiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata:\n  name: l2-abcde\n  namespace: metallb-system\n  labels:\n    metallb.io/node: node-b\n    metallb.io/service-name: web\n    metallb.io/service-namespace: default\n---\napiVersion: metallb.io/v1beta1\nkind: ConfigurationState\nmetadata:\n  name: controller\n  namespace: metallb-system\n",
    );
    // Only the Services of the documented output: the examples' Services go first.
    kubectl.ok(&[
        "delete",
        "services",
        "-n",
        "default",
        "--field-selector",
        "metadata.name!=kubernetes",
    ]);
    kubectl.ok(&["apply", "-f", &objects]);
    for (target, namespace, status) in [
        (
            "service/web",
            "default",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.10.240"}]}}}"#,
        ),
        (
            "servicel2status/l2-abcde",
            "metallb-system",
            r#"{"status":{"node":"node-b","serviceName":"web","serviceNamespace":"default"}}"#,
        ),
        (
            "configurationstate/controller",
            "metallb-system",
            r#"{"status":{"result":"Valid"}}"#,
        ),
    ] {
        kubectl.ok(&[
            "patch",
            target,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ]);
    }
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .arg("status")
            .arg("--kubeconfig")
            .arg(kubectl.kubeconfig())
            .output()
    })
    .unwrap_or_else(|error| panic!("ironlb status: {error}"));
    assert!(output.status.success(), "{}", common::text(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        without_times(&printed),
        without_times(&documented_status_output()),
        "`ironlb status` differs from docs/troubleshooting.md"
    );
}

/// Names registered with prometheus-client anywhere in the crates: string literals that follow a
/// `register(` call, with the prefix of `sub_registry_with_prefix` when the file uses one.
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![repo_root().join("crates")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|entry| entry.ok()) {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let prefix = text
                .split("sub_registry_with_prefix(\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|prefix| format!("{prefix}_"));
            for chunk in text.split(".register(").skip(1) {
                let Some(name) = chunk
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|rest| rest.split('"').next())
                else {
                    // Registered through a variable: the literal is in a table nearby.
                    continue;
                };
                names.insert(format!("{}{name}", prefix.clone().unwrap_or_default()));
            }
            // Tables of (name, help, metric) registered in a loop.
            for chunk in text.split("(\n").skip(1) {
                if let Some(name) = chunk
                    .trim_start()
                    .strip_prefix("\"metallb_")
                    .and_then(|rest| rest.split('"').next())
                {
                    names.insert(format!("metallb_{name}"));
                }
            }
        }
    }
    names
}

fn family_of(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

#[test]
fn every_documented_metric_is_registered_in_the_code() {
    let registered: BTreeSet<String> = registered_metrics()
        .iter()
        .map(|name| family_of(name).to_owned())
        .collect();
    let documented: Vec<String> = read("docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    assert!(documented.len() >= 30, "{documented:?}");
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|name| !registered.contains(family_of(name)))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/metrics.md lists metrics no code registers: {unknown:?}\n(registered: {registered:?})"
    );
}

/// The knob, `lan` and `wan` cells of the gossip timer tables.
fn timer_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", knob, lan, wan, _meaning, ""] if knob.ends_with('`') => {
                    Some(((*knob).to_owned(), (*lan).to_owned(), (*wan).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn the_failover_page_shows_the_gossip_timers_of_the_code() {
    let documented = timer_rows(&read("docs/failover.md"));
    let source = timer_rows(&read("crates/gossip/README.md"));
    assert!(documented.len() >= 10, "{documented:?}");
    assert_eq!(
        documented, source,
        "docs/failover.md's timer table differs from crates/gossip/README.md's"
    );
}
