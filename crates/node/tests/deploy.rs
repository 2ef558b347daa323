//! `deploy/`: the generated CRDs and the rendered all-in-one manifest are in sync with their
//! sources, the API stand-in accepts the manifest, the workloads keep their security settings,
//! and the RBAC rules are exactly what the controller and the speaker use (both run against the
//! stand-in through a proxy that records their requests).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{documents, read, repo_root, Kubectl};
use ironlb_actors::tree::metallb_resource;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const NAMESPACE: &str = "metallb-system";
const WAIT_MAX: Duration = Duration::from_secs(60);
const REGENERATE_CRDS: &str = "cargo run -p ironlb -- crds > deploy/crds/metallb.io.yaml";
const REGENERATE_MANIFEST: &str = "kubectl kustomize deploy/ > deploy/ironlb.yaml";

fn ironlb(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("ironlb {args:?}: {error}"));
    assert!(
        output.status.success(),
        "ironlb {args:?}: {}",
        common::text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn crd_files_match_the_rust_types() {
    let generated = ironlb(&["crds"]);
    let file = read("deploy/crds/metallb.io.yaml");
    assert!(
        generated == file,
        "deploy/crds/metallb.io.yaml differs from the CRDs generated from crates/api; regenerate with\n  {REGENERATE_CRDS}"
    );
    let names: BTreeSet<String> = documents(&file)
        .iter()
        .filter_map(|crd| crd["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        "bfdprofiles",
        "bgpadvertisements",
        "bgppeers",
        "communities",
        "configurationstates",
        "ipaddresspools",
        "l2advertisements",
        "servicebgpstatuses",
        "servicel2statuses",
    ]
    .iter()
    .map(|plural| format!("{plural}.metallb.io"))
    .collect();
    assert_eq!(names, expected);
    // What the issue asks of them: status subresources everywhere, BGPPeer served as v1beta1
    // (deprecated) and v1beta2 (stored), defaults, ranges, enums and CEL rules in the schemas.
    for crd in documents(&file) {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let versions = crd["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            versions.iter().filter(|v| v["storage"] == true).count(),
            1,
            "{name}: one storage version"
        );
        for version in &versions {
            assert_eq!(version["served"], true, "{name}");
            assert!(
                version["subresources"]["status"].is_object(),
                "{name} {}: no status subresource",
                version["name"]
            );
        }
        if name == "bgppeers.metallb.io" {
            let version = |v: &str| {
                versions
                    .iter()
                    .find(|version| version["name"] == v)
                    .cloned()
                    .unwrap_or_default()
            };
            assert_eq!(version("v1beta2")["storage"], true);
            assert_eq!(version("v1beta1")["storage"], false);
            assert_eq!(version("v1beta1")["deprecated"], true);
        }
    }
    for marker in [
        "default:",
        "minimum:",
        "maximum:",
        "enum:",
        "x-kubernetes-validations:",
    ] {
        assert!(file.contains(marker), "no {marker} in the CRD schemas");
    }
}

#[test]
fn rendered_manifest_is_in_sync_with_the_kustomize_tree() {
    if !common::kubectl_available() {
        return;
    }
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("deploy"))
        .output()
        .unwrap_or_else(|error| panic!("kubectl kustomize: {error}"));
    assert!(output.status.success(), "{}", common::text(&output));
    let rendered = String::from_utf8_lossy(&output.stdout);
    assert!(
        rendered == read("deploy/ironlb.yaml"),
        "deploy/ironlb.yaml differs from `kubectl kustomize deploy/`; regenerate with\n  {REGENERATE_MANIFEST}"
    );
}

/// The objects of deploy/ironlb.yaml by `Kind/name`.
fn manifest() -> BTreeMap<String, Value> {
    documents(&read("deploy/ironlb.yaml"))
        .into_iter()
        .map(|object| {
            let key = format!(
                "{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, object)
        })
        .collect()
}

fn object<'a>(objects: &'a BTreeMap<String, Value>, key: &str) -> &'a Value {
    objects
        .get(key)
        .unwrap_or_else(|| panic!("deploy/ironlb.yaml has no {key}"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// `--flag=value` arguments of a container.
fn flags(container: &Value) -> BTreeMap<String, String> {
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|arg| arg.strip_prefix("--"))
        .map(|arg| match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => (arg.to_owned(), String::new()),
        })
        .collect()
}

/// Every flag given in the manifest exists in `ironlb <command> --help`.
fn assert_flags_exist(command: &str, container: &Value) {
    let help = ironlb(&[command, "--help"]);
    for flag in flags(container).keys() {
        assert!(
            help.contains(&format!("--{flag}")),
            "`ironlb {command}` has no --{flag}"
        );
    }
}

fn port_number(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name}"))
}

#[test]
fn controller_runs_unprivileged_with_probes_and_resources() {
    let objects = manifest();
    let deployment = object(&objects, "Deployment/ironlb-controller");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ironlb-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64() > Some(0));
    assert!(pod["hostNetwork"].is_null() || pod["hostNetwork"] == false);
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "controller");
    assert_flags_exist("controller", container);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(security["capabilities"]["add"].is_null());
    // Probes on the port the controller serves them on.
    let flags = flags(container);
    let health_port = port_number(container, "health");
    assert_eq!(flags["health-probe-port"], health_port.to_string());
    assert_eq!(
        flags["port"],
        port_number(container, "monitoring").to_string()
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "health");
    }
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(
        env_value(container, "METALLB_POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
}

#[test]
fn speaker_has_host_network_net_raw_the_secret_and_enough_grace() {
    let objects = manifest();
    let daemonset = object(&objects, "DaemonSet/ironlb-speaker");
    assert_eq!(daemonset["metadata"]["namespace"], NAMESPACE);
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ironlb-speaker");
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "speaker");
    assert_flags_exist("speaker", container);
    let security = &container["securityContext"];
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["capabilities"]["add"], json!(["NET_RAW"]));
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(security["privileged"].is_null() || security["privileged"] == false);
    // The node name from the downward API.
    assert_eq!(
        env_value(container, "METALLB_NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // The memberlist Secret, mounted where --ml-secret-key-path points.
    let key_path = env_value(container, "METALLB_ML_SECRET_KEY_PATH")["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let volume = pod["volumes"]
        .as_array()
        .and_then(|volumes| {
            volumes
                .iter()
                .find(|v| v["secret"]["secretName"] == "memberlist")
        })
        .unwrap_or_else(|| panic!("no memberlist volume"));
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == volume["name"]))
        .unwrap_or_else(|| panic!("memberlist volume not mounted"));
    assert_eq!(mount["mountPath"], key_path.as_str());
    assert!(
        ironlb(&["speaker", "--help"]).contains(&format!("default: {key_path}")),
        "the speaker does not read {key_path} by default"
    );
    // Control-plane nodes tolerated.
    let tolerations = pod["tolerations"].as_array().cloned().unwrap_or_default();
    assert!(tolerations
        .iter()
        .any(|t| t["key"] == "node-role.kubernetes.io/control-plane" && t["operator"] == "Exists"));
    // Grace above --shutdown-grace plus the 2 s the speaker allows itself to finish.
    let grace = flags(container)
        .get("shutdown-grace")
        .and_then(|text| ironlb_api::config::duration::parse_go_duration(text).ok())
        .unwrap_or(Duration::from_secs(5));
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        Duration::from_secs(termination) > grace + Duration::from_secs(2),
        "terminationGracePeriodSeconds {termination} is not above --shutdown-grace {grace:?} + 2s"
    );
    // Probes on a port reachable from the kubelet (the metrics port, all interfaces).
    let monitoring = port_number(container, "monitoring");
    assert_eq!(flags(container)["port"], monitoring.to_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
}

/// Whether kubectl's apply output says `Kind/name` was created (`kind[.group]/name created`).
fn created(output: &str, key: &str) -> bool {
    let (kind, name) = key.split_once('/').unwrap_or_default();
    let kind = kind.to_ascii_lowercase();
    output.lines().any(|line| {
        let Some((resource, rest)) = line.split_once('/') else {
            return false;
        };
        let resource_kind = resource.split('.').next().unwrap_or_default();
        resource_kind == kind && rest == format!("{name} created")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_accepts_the_manifest() {
    if !common::kubectl_available() {
        return;
    }
    let handle = common::stand_in().await;
    let kubectl = Kubectl::new(&handle);
    let path = repo_root().join("deploy/ironlb.yaml").display().to_string();
    let objects = manifest();
    let is_speaker = |key: &String| {
        objects[key]["metadata"]["labels"]["app.kubernetes.io/component"] == "speaker"
    };
    // docs/migrating-from-metallb.md step 3: everything but the speaker's objects.
    let first = kubectl.ok(&[
        "apply",
        "-f",
        &path,
        "-l",
        "app.kubernetes.io/component!=speaker",
    ]);
    for key in objects.keys() {
        assert_eq!(
            created(&first, key),
            !is_speaker(key),
            "{key} in the first, speaker-less apply:\n{first}"
        );
    }
    assert!(objects.keys().any(is_speaker));
    // Step 5: the rest.
    let second = kubectl.ok(&["apply", "-f", &path]);
    for key in objects.keys() {
        assert_eq!(created(&second, key), is_speaker(key), "{key}:\n{second}");
    }
    // A third apply changes nothing.
    let third = kubectl.ok(&["apply", "-f", &path]);
    assert!(
        third.lines().all(|line| line.ends_with(" unchanged")),
        "{third}"
    );
    let daemonsets = kubectl.ok(&["get", "daemonsets", "-n", NAMESPACE, "-o", "name"]);
    assert_eq!(daemonsets.trim(), "daemonset.apps/ironlb-speaker");
    // The CRDs are served: the configuration of the installation guide is accepted.
    let guide = kubectl.file(
        "pool.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: first-pool\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.168.10.0/24\n",
    );
    kubectl.ok(&["apply", "-f", &guide]);
    let auto_assign = kubectl.ok(&[
        "get",
        "ipaddresspools.metallb.io",
        "first-pool",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.autoAssign}",
    ]);
    assert_eq!(auto_assign.trim(), "true", "defaulted by the CRD schema");
}

// ---------------------------------------------------------------------------------------------
// RBAC: a recording proxy between each component and the stand-in, then a small RBAC evaluator.

/// One request a component sent: method, path, query.
type Recorded = Arc<Mutex<Vec<(String, String, String)>>>;

/// A TCP proxy to `upstream` that records the request line of every HTTP/1.1 request.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("proxy bind: {error}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("{error}"));
    let recorded: Recorded = Arc::default();
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    proxy_connection(client, server, log).await;
                }
            });
        }
    });
    (addr, recorded)
}

async fn proxy_connection(client: TcpStream, server: TcpStream, log: Recorded) {
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut reader = BufReader::new(client_read);
    loop {
        let mut head = Vec::new();
        let mut content_length = 0usize;
        let mut first = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first.is_empty() {
                first = line.trim_end().to_owned();
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            assert!(
                !lower.starts_with("transfer-encoding:"),
                "the proxy does not forward chunked requests"
            );
            head.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if let Ok(mut log) = log.lock() {
            log.push((method, path.to_owned(), query.to_owned()));
        }
        if server_write.write_all(&head).await.is_err()
            || server_write.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

/// A resource request in RBAC's terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

/// RBAC's view of a request; `None` for non-resource URLs (discovery, /version).
fn access(method: &str, path: &str, query: &str) -> Option<Access> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, resource, rest @ ..] => (
            Some((*namespace).to_owned()),
            [&[*resource][..], rest].concat(),
        ),
        other => (None, other.to_vec()),
    };
    let (resource, name) = match rest.as_slice() {
        [resource] => ((*resource).to_owned(), None),
        [resource, name] => ((*resource).to_owned(), Some((*name).to_owned())),
        [resource, name, sub] => (format!("{resource}/{sub}"), Some((*name).to_owned())),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(Access {
        verb: verb.to_owned(),
        group: group.to_owned(),
        resource,
        namespace,
        name,
    })
}

/// One RBAC rule with where it applies: `namespace` `None` for a ClusterRole bound cluster-wide.
#[derive(Debug)]
struct Grant {
    role: String,
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The rules bound to a ServiceAccount of metallb-system in deploy/ironlb.yaml.
fn grants(service_account: &str) -> Vec<Grant> {
    let objects = manifest();
    let mut grants = Vec::new();
    for binding in objects.values() {
        let kind = binding["kind"].as_str().unwrap_or_default();
        if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
            continue;
        }
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == service_account
                    && s["namespace"] == NAMESPACE
            });
        if !bound {
            continue;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let role = object(&objects, &format!("{role_kind}/{role_name}"));
        let namespace = (kind == "RoleBinding").then(|| {
            binding["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        if role_kind == "Role" {
            assert_eq!(
                role["metadata"]["namespace"],
                binding["metadata"]["namespace"]
            );
        }
        for rule in role["rules"].as_array().into_iter().flatten() {
            grants.push(Grant {
                role: format!("{role_kind}/{role_name}"),
                namespace: namespace.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                names: strings(&rule["resourceNames"]),
            });
        }
    }
    grants
}

fn allows(grant: &Grant, access: &Access) -> bool {
    let namespace_ok = match (&grant.namespace, &access.namespace) {
        (None, _) => true,
        (Some(bound), Some(requested)) => bound == requested,
        (Some(_), None) => false,
    };
    let name_ok = grant.names.is_empty()
        || access
            .name
            .as_ref()
            .is_some_and(|name| grant.names.contains(name));
    namespace_ok
        && name_ok
        && grant.groups.iter().any(|g| g == "*" || *g == access.group)
        && grant
            .resources
            .iter()
            .any(|r| r == "*" || *r == access.resource)
        && grant.verbs.iter().any(|v| v == "*" || *v == access.verb)
}

/// Every request is allowed, and every (role, group, resource, verb) granted is used.
fn assert_rbac_is_exact(component: &str, service_account: &str, recorded: &Recorded) {
    let grants = grants(service_account);
    assert!(!grants.is_empty(), "no role bound to {service_account}");
    let requests: Vec<(String, String, String)> =
        recorded.lock().map(|log| log.clone()).unwrap_or_default();
    assert!(!requests.is_empty(), "{component} sent no request");
    let mut denied = BTreeSet::new();
    let mut used = BTreeSet::new();
    for (method, path, query) in &requests {
        let Some(access) = access(method, path, query) else {
            continue;
        };
        let mut allowed = false;
        for grant in grants.iter().filter(|g| allows(g, &access)) {
            allowed = true;
            for group in &grant.groups {
                used.insert((
                    grant.role.clone(),
                    group.clone(),
                    access.resource.clone(),
                    access.verb.clone(),
                ));
            }
        }
        if !allowed {
            denied.insert(format!(
                "{} {}/{} ns={:?} ({method} {path}?{query})",
                access.verb, access.group, access.resource, access.namespace
            ));
        }
    }
    assert!(
        denied.is_empty(),
        "{component}: requests the RBAC of {service_account} in deploy/ does not allow:\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );
    let mut unused = Vec::new();
    for grant in &grants {
        for group in &grant.groups {
            for resource in &grant.resources {
                for verb in &grant.verbs {
                    let key = (
                        grant.role.clone(),
                        group.clone(),
                        resource.clone(),
                        verb.clone(),
                    );
                    if !used.contains(&key) {
                        unused.push(format!("{} {group}/{resource} {verb}", grant.role));
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "{component}: granted but never used (least privilege: remove them, or exercise the code path here):\n{}",
        unused.join("\n")
    );
}

fn client_for(addr: SocketAddr) -> kube::Client {
    let url = format!("http://{addr}")
        .parse()
        .unwrap_or_else(|error| panic!("url: {error}"));
    let mut config = kube::Config::new(url);
    config.default_namespace = "default".into();
    config.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(config).unwrap_or_else(|error| panic!("client: {error}"))
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|error| panic!("test object: {error}"))
}

/// The objects of the metallb.io `resource` in [`NAMESPACE`], through `client`.
fn metallb_api(client: &kube::Client, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NAMESPACE, resource)
}

/// Creates `object` through `api`; a refusal fails the test with `what` and the error.
async fn create<K>(api: &Api<K>, what: &str, object: Value)
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &from_json::<K>(object))
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ingress_ip(services: &Api<Service>, name: &str) -> Option<String> {
    let service = services.get(name).await.ok()?;
    service.status?.load_balancer?.ingress?.first()?.ip.clone()
}

/// How many times an Event with `reason` was emitted: the largest series count among them, 0
/// while there is none (or the list fails).
async fn event_count(events: &Api<k8s_openapi::api::events::v1::Event>, reason: &str) -> i32 {
    events
        .list(&Default::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Whether the ConfigurationState `name` reports the configuration `Valid`.
async fn configuration_state_valid(states: &Api<DynamicObject>, name: &str) -> bool {
    states
        .get(name)
        .await
        .is_ok_and(|state| state.data["status"]["result"] == "Valid")
}

/// The metric families of a Prometheus text exposition.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connect {addr}: {error}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// Metric families listed in docs/metrics.md (names in backquotes at the start of a table row).
fn documented_metrics() -> BTreeSet<String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| name.split('{').next().unwrap_or(name).to_owned())
        .collect()
}

/// A Prometheus family name (`_total` is part of a counter's sample names, not of the family).
fn family_of(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn assert_documented(component: &str, exported: &BTreeSet<String>) {
    let documented: BTreeSet<String> = documented_metrics()
        .iter()
        .map(|name| family_of(name).to_owned())
        .collect();
    let missing: Vec<&String> = exported
        .iter()
        .filter(|name| !documented.contains(family_of(name)))
        .collect();
    assert!(
        missing.is_empty(),
        "{component} exports metrics docs/metrics.md does not list: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_is_exactly_what_the_controller_and_the_speaker_call() {
    let handle = common::stand_in_with_crds().await;
    let admin = client_for(handle.addr());
    create(
        &Api::<Namespace>::all(admin.clone()),
        "namespace",
        json!({"metadata": {"name": NAMESPACE}}),
    )
    .await;
    create(
        &Api::<Node>::all(admin.clone()),
        "node",
        json!({"metadata": {"name": "node-a"}}),
    )
    .await;
    let pools = metallb_api(&admin, &metallb_resource("IPAddressPool", "ipaddresspools"));
    create(
        &pools,
        "pool",
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "pool-a"},
            "spec": {"addresses": ["10.20.0.0/24"]}
        }),
    )
    .await;
    create(
        &metallb_api(
            &admin,
            &metallb_resource("L2Advertisement", "l2advertisements"),
        ),
        "l2 advertisement",
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": "l2"}, "spec": {"ipAddressPools": ["pool-a"]}
        }),
    )
    .await;
    // BGP too: a peer on a closed loopback port (the session never comes up, which does not
    // matter here) and an advertisement, so that the speaker writes ServiceBGPStatus.
    let bgp_peers = ApiResource {
        version: "v1beta2".into(),
        api_version: "metallb.io/v1beta2".into(),
        ..metallb_resource("BGPPeer", "bgppeers")
    };
    create(
        &metallb_api(&admin, &bgp_peers),
        "bgp peer",
        json!({
            "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": "loopback"},
            "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "127.0.0.1", "peerPort": 1}
        }),
    )
    .await;
    create(
        &metallb_api(
            &admin,
            &metallb_resource("BGPAdvertisement", "bgpadvertisements"),
        ),
        "bgp advertisement",
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
            "metadata": {"name": "bgp"}, "spec": {"ipAddressPools": ["pool-a"]}
        }),
    )
    .await;
    let services = Api::<Service>::namespaced(admin.clone(), "default");
    for (name, annotations) in [
        ("web", json!({})),
        // An IP outside every pool: AllocationFailed on every pass, the second one a patch of
        // the same Event.
        ("stuck", json!({"metallb.io/loadBalancerIPs": "192.0.2.99"})),
    ] {
        create(
            &services,
            &format!("service {name}"),
            json!({
                "metadata": {"name": name, "namespace": "default", "annotations": annotations},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
            }),
        )
        .await;
    }

    // The controller, through the proxy.
    let (proxy, recorded) = recording_proxy(handle.addr()).await;
    let controller = ironlb_controller::start(
        client_for(proxy),
        ironlb_controller::Options {
            instance: Some("ironlb-controller-0".into()),
            ..ironlb_controller::Options::default()
        },
    )
    .await
    .unwrap_or_else(|error| panic!("controller: {error}"));
    wait_until("web gets an IP", || async {
        ingress_ip(&services, "web").await.is_some()
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), "default");
    wait_until("AllocationFailed for stuck", || async {
        event_count(&events, "AllocationFailed").await >= 1
    })
    .await;
    // Touch the stuck Service: a second identical Event (series, a patch).
    services
        .patch(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "1"}}})),
        )
        .await
        .unwrap_or_else(|error| panic!("touch: {error}"));
    wait_until("AllocationFailed repeated", || async {
        event_count(&events, "AllocationFailed").await >= 2
    })
    .await;
    wait_until("pool status written", || async {
        pools
            .get("pool-a")
            .await
            .is_ok_and(|pool| pool.data["status"]["assignedIPv4"].as_i64() == Some(1))
    })
    .await;
    wait_until("memberlist Secret created", || async {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), NAMESPACE)
            .get_opt("memberlist")
            .await
            .is_ok_and(|secret| secret.is_some())
    })
    .await;
    let configuration_states = metallb_api(
        &admin,
        &metallb_resource("ConfigurationState", "configurationstates"),
    );
    wait_until("ConfigurationState controller written", || async {
        configuration_state_valid(&configuration_states, "controller").await
    })
    .await;
    let controller_metrics = families(&controller.render_metrics());
    controller.shutdown().await;
    assert_rbac_is_exact("controller", "ironlb-controller", &recorded);
    assert_documented("the controller", &controller_metrics);

    // The speaker, through another proxy, with the layer 2 commands on a channel (no sockets).
    let web_ip = ingress_ip(&services, "web")
        .await
        .unwrap_or_else(|| panic!("web has no IP"));
    let slices = Api::<EndpointSlice>::namespaced(admin.clone(), "default");
    let slice = json!({
        "metadata": {"name": "web-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "nodeName": "node-a",
                       "conditions": {"ready": true}}]
    });
    create(&slices, "slice", slice.clone()).await;
    let (proxy, recorded) = recording_proxy(handle.addr()).await;
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|error| panic!("{error}"));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let shared = ironlb_actors::tree::Shared::new(
        ironlb_actors::tree::SpeakerConfig {
            node: "node-a".into(),
            namespace: NAMESPACE.into(),
            options: ironlb_actors::decide::Options::default(),
            gossip: None,
            l2: ironlb_actors::tree::L2Backend::Channel(tx),
            http: vec![http],
            bgp_shutdown_wait: Duration::from_secs(1),
        },
        Some(client_for(proxy)),
    );
    let (speaker, speaker_task) = ractor::Actor::spawn(
        Some("h5-deploy/speaker".into()),
        ironlb_actors::tree::Speaker,
        shared,
    )
    .await
    .unwrap_or_else(|error| panic!("speaker: {error}"));
    let statuses = metallb_api(
        &admin,
        &metallb_resource("ServiceL2Status", "servicel2statuses"),
    );
    let bgp_statuses = metallb_api(
        &admin,
        &metallb_resource("ServiceBGPStatus", "servicebgpstatuses"),
    );
    // ServiceL2Status and ServiceBGPStatus objects of web.
    let status_count = || async {
        let mut count = 0;
        for api in [&statuses, &bgp_statuses] {
            count += api
                .list(&Default::default())
                .await
                .map_or(0, |list| list.items.len());
        }
        count
    };
    wait_until("ServiceL2Status and ServiceBGPStatus written", || async {
        status_count().await == 2
    })
    .await;
    wait_until("ConfigurationState speaker-node-a written", || async {
        configuration_state_valid(&configuration_states, "speaker-node-a").await
    })
    .await;
    // Endpoints gone: withdraw, status deleted; back: announced again, a repeated Event.
    slices
        .delete("web-1", &Default::default())
        .await
        .unwrap_or_else(|error| panic!("delete slice: {error}"));
    wait_until("ServiceL2Status and ServiceBGPStatus deleted", || async {
        status_count().await == 0
    })
    .await;
    create(&slices, "slice", slice).await;
    wait_until("announced again", || async {
        status_count().await == 2 && event_count(&events, "nodeAssigned").await >= 2
    })
    .await;
    // The speaker's Lease is created, then renewed (an update) every second.
    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin.clone(), NAMESPACE);
    let lease_version = || async {
        leases
            .get_opt("ironlb-speaker-node-a")
            .await
            .ok()
            .flatten()
            .and_then(|lease| lease.metadata.resource_version)
    };
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    let mut first_version = None;
    loop {
        let version = lease_version().await;
        match (&first_version, version) {
            (None, Some(version)) => first_version = Some(version),
            (Some(first), Some(version)) if *first != version => break,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: Lease ironlb-speaker-node-a renewed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while rx.try_recv().is_ok() {}
    let speaker_metrics = families(&http_get(http, "/metrics").await);
    speaker.stop(None);
    let _ = speaker_task.await;
    assert!(
        speaker_metrics.contains("metallb_speaker_announced"),
        "{speaker_metrics:?} (web {web_ip})"
    );
    assert_rbac_is_exact("speaker", "ironlb-speaker", &recorded);
    assert_documented("the speaker", &speaker_metrics);
}
