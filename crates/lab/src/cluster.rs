//! The Kubernetes side of a lab: `ironlb apiserver` and `ironlb controller` in the
//! control-plane namespace (on the LAN, so the speakers reach the API as pods on a host network
//! would), one `ironlb speaker` per node namespace, `kubectl` against the stand-in, Node objects
//! whose InternalIPs are the namespaces' addresses, the memberlist Secret created as a user
//! would, EndpointSlices for backends on the nodes, and the status objects read back.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::LabError;
use crate::manifests::{Family, ServiceSpec};
use crate::process::{ProcessSpec, Signal};
use crate::topology::{command_line, run_command, Lab, CONTROL_PLANE};

/// The namespace of the metallb.io configuration, the memberlist Secret and status objects.
pub const METALLB_NAMESPACE: &str = "metallb-system";
/// The stand-in's port on the control-plane address.
pub const APISERVER_PORT: u16 = 6443;
/// Name of the API stand-in process.
pub const APISERVER: &str = "apiserver";
/// Name of the controller process.
pub const CONTROLLER: &str = "controller";
/// How long start-up steps may take on a loaded machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The process name of a node's speaker.
pub fn speaker_name(node: &str) -> String {
    format!("speaker-{node}")
}

/// The process name of a node's backend.
pub fn backend_name(node: &str) -> String {
    format!("backend-{node}")
}

/// A lab with the control plane running.
#[derive(Debug)]
pub struct Cluster {
    /// The network and processes.
    pub lab: Lab,
    binary: PathBuf,
    kubeconfig: PathBuf,
    secret_file: PathBuf,
    speaker_args: BTreeMap<String, Vec<String>>,
}

impl Cluster {
    /// Starts the API stand-in in the control-plane namespace, waits until kubectl reaches it,
    /// creates `metallb-system`, the memberlist Secret (`kubectl create secret generic`) and one
    /// Node per node namespace (InternalIP = its LAN addresses). `binary` is `ironlb`.
    pub fn start(lab: Lab, binary: &Path) -> Result<Self, LabError> {
        let kubeconfig = lab.dir().join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let secret_file = lab.dir().join("memberlist-secretkey");
        let mut cluster = Self {
            lab,
            binary: binary.to_owned(),
            kubeconfig,
            secret_file,
            speaker_args: BTreeMap::new(),
        };
        cluster.start_apiserver()?;
        cluster.kubectl(&["create", "namespace", METALLB_NAMESPACE])?;
        let key = random_hex(32)?;
        cluster.kubectl(&[
            "create",
            "secret",
            "generic",
            "memberlist",
            "-n",
            METALLB_NAMESPACE,
            &format!("--from-literal=secretkey={key}"),
        ])?;
        // The speaker reads the Secret as its DaemonSet would mount it: the key in a file.
        std::fs::write(&cluster.secret_file, &key).map_err(|source| LabError::File {
            path: cluster.secret_file.clone(),
            source,
        })?;
        for node in cluster.lab.nodes() {
            cluster.apply(&node_yaml(&cluster.lab, &node, &BTreeMap::new())?)?;
        }
        Ok(cluster)
    }

    /// The `ironlb` binary the lab runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The kubeconfig the stand-in wrote.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Starts (or restarts) the API stand-in; waits until kubectl reaches it.
    pub fn start_apiserver(&mut self) -> Result<(), LabError> {
        let listen = format!("{}:{APISERVER_PORT}", self.lab.v4(CONTROL_PLANE)?);
        let kubeconfig = self.kubeconfig.display().to_string();
        let spec = ProcessSpec::new(
            APISERVER,
            CONTROL_PLANE,
            &self.binary,
            &[
                "apiserver",
                "--listen",
                &listen,
                "--kubeconfig-out",
                &kubeconfig,
            ],
        );
        self.lab.spawn(spec)?;
        self.lab
            .wait_log(APISERVER, "listening on", START_TIMEOUT)?;
        self.wait_until(
            "kubectl reaches the API stand-in",
            START_TIMEOUT,
            |cluster| cluster.kubectl(&["get", "namespaces"]).is_ok(),
        )
    }

    /// Starts (or restarts) `ironlb controller`.
    pub fn start_controller(&mut self) -> Result<(), LabError> {
        let kubeconfig = self.kubeconfig.display().to_string();
        let spec = ProcessSpec::new(
            CONTROLLER,
            CONTROL_PLANE,
            &self.binary,
            &["controller", "--kubeconfig", &kubeconfig],
        );
        self.lab.spawn(spec)
    }

    /// Starts `ironlb speaker` on `node` (host network: the namespace; gossip bound to the
    /// node's LAN address) with `extra` flags. A restart keeps the flags.
    pub fn start_speaker(&mut self, node: &str, extra: &[&str]) -> Result<(), LabError> {
        let address = self.lab.v4(node)?.to_string();
        let kubeconfig = self.kubeconfig.display().to_string();
        let secret = self.secret_file.display().to_string();
        let mut args = vec![
            "speaker",
            "--node-name",
            node,
            "--kubeconfig",
            &kubeconfig,
            "--ml-bindaddr",
            &address,
            "--ml-secret-key-path",
            &secret,
        ];
        args.extend_from_slice(extra);
        self.speaker_args.insert(
            node.to_owned(),
            extra.iter().map(|a| (*a).to_owned()).collect(),
        );
        let spec = ProcessSpec::new(&speaker_name(node), node, &self.binary, &args).env(
            "RUST_LOG",
            "info,hyper=warn,kube_client=warn,kube_runtime=warn",
        );
        self.lab.spawn(spec)
    }

    /// Starts a speaker on every node with the same `extra` flags.
    pub fn start_speakers(&mut self, extra: &[&str]) -> Result<(), LabError> {
        for node in self.lab.nodes() {
            self.start_speaker(&node, extra)?;
        }
        Ok(())
    }

    /// Starts the node's tiny backend (answers with the node name) through the binary's
    /// hidden `lab backend` subcommand, listening on every address of the node namespace.
    pub fn start_backend(&mut self, node: &str, args: &[&str]) -> Result<(), LabError> {
        let mut all = vec!["lab", "backend", "--node", node];
        all.extend_from_slice(args);
        let spec = ProcessSpec::new(&backend_name(node), node, &self.binary, &all);
        self.lab.spawn(spec)
    }

    /// Sends `signal` to a lab process by name.
    pub fn signal(&mut self, name: &str, signal: Signal) -> Result<(), LabError> {
        self.lab.signal(name, signal)
    }

    /// A `kubectl` command against the stand-in, run from the control-plane namespace.
    pub fn kubectl_command(&self) -> Command {
        let mut command = self.lab.command(CONTROL_PLANE, "kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command.arg("--request-timeout=10s");
        command
    }

    /// The kubectl command line users can paste (for `--keep`).
    pub fn kubectl_line(&self) -> String {
        command_line(&self.kubectl_command())
    }

    /// Runs kubectl with `args`; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, LabError> {
        let mut command = self.kubectl_command();
        command.args(args);
        run_command(command)
    }

    /// `kubectl apply -f` of a YAML text (written to the lab directory first).
    pub fn apply(&self, yaml: &str) -> Result<String, LabError> {
        let path = self.lab.write_file("apply.yaml", yaml)?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }

    /// `kubectl delete -f` of a YAML text.
    pub fn delete(&self, yaml: &str) -> Result<String, LabError> {
        let path = self.lab.write_file("delete.yaml", yaml)?;
        self.kubectl(&["delete", "--wait=false", "-f", &path.display().to_string()])
    }

    /// Sets labels on a Node (`kubectl label --overwrite`); a value of `None` removes the key.
    pub fn label_node(&self, node: &str, labels: &[(&str, Option<&str>)]) -> Result<(), LabError> {
        let mut args = vec!["label".to_owned(), "node".to_owned(), node.to_owned()];
        args.push("--overwrite".to_owned());
        for (key, value) in labels {
            args.push(match value {
                Some(value) => format!("{key}={value}"),
                None => format!("{key}-"),
            });
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubectl(&refs).map(drop)
    }

    /// A Kubernetes object as JSON (`kubectl get -o json`); `None` if it does not exist.
    pub fn get_json(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let text = self
            .kubectl(&["get", kind, name, "-n", namespace, "-o", "json"])
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The ingress IPs of a Service's status.
    pub fn service_ips(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        let Some(service) = self.get_json("service", namespace, name) else {
            return Vec::new();
        };
        service["status"]["loadBalancer"]["ingress"]
            .as_array()
            .map(|ingress| {
                ingress
                    .iter()
                    .filter_map(|entry| entry["ip"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until a Service has `count` ingress IPs; returns them.
    pub fn wait_service_ips(
        &self,
        namespace: &str,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<IpAddr>, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let ips = self.service_ips(namespace, name);
            if ips.len() == count {
                return Ok(ips);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("{count} IP(s) on Service {namespace}/{name} (has {ips:?})"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes named by the `ServiceL2Status` objects of a Service (one when converged).
    pub fn l2_status_nodes(&self, namespace: &str, name: &str) -> Vec<String> {
        let Ok(text) = self.kubectl(&[
            "get",
            "servicel2statuses.metallb.io",
            "-n",
            METALLB_NAMESPACE,
            "-o",
            "json",
        ]) else {
            return Vec::new();
        };
        let Ok(list) = serde_json::from_str::<Value>(&text) else {
            return Vec::new();
        };
        let mut nodes: Vec<String> = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|item| {
                        item["status"]["serviceName"].as_str() == Some(name)
                            && item["status"]["serviceNamespace"].as_str() == Some(namespace)
                    })
                    .filter_map(|item| item["status"]["node"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort();
        nodes
    }

    /// Creates a Service and its EndpointSlice (a ready endpoint on each of `endpoint_nodes`),
    /// waits until the controller gives it an IP, and has the kube-proxy stand-in deliver the
    /// IP to every node. Returns the IP.
    pub fn create_service(
        &self,
        spec: &ServiceSpec,
        endpoint_nodes: &[String],
    ) -> Result<IpAddr, LabError> {
        self.apply(&spec.yaml())?;
        self.set_endpoints(spec, endpoint_nodes)?;
        let ips = self.wait_service_ips("default", &spec.name, 1, START_TIMEOUT)?;
        let ip = ips.first().copied().ok_or_else(|| LabError::Parse {
            what: format!("Service default/{}", spec.name),
            detail: "no ingress IP".into(),
        })?;
        self.lab.kube_proxy_add(ip)?;
        Ok(ip)
    }

    /// Replaces the Service's EndpointSlice: one ready endpoint on each of `nodes`.
    pub fn set_endpoints(&self, spec: &ServiceSpec, nodes: &[String]) -> Result<(), LabError> {
        let slice = endpoint_slice_yaml(
            &self.lab,
            "default",
            &spec.name,
            spec.family == Family::V6,
            nodes,
            &spec.slice_ports(),
        )?;
        self.apply(&slice).map(drop)
    }

    /// Polls `check` every 100 ms until it holds.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> bool,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: what.to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A Node object for a node namespace: InternalIPs are its LAN addresses.
pub fn node_yaml(
    lab: &Lab,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String, LabError> {
    let mut all_labels = BTreeMap::new();
    all_labels.insert("kubernetes.io/hostname".to_owned(), node.to_owned());
    all_labels.insert("kubernetes.io/os".to_owned(), "linux".to_owned());
    all_labels.extend(labels.clone());
    let node_object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": all_labels},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": lab.v4(node)?.to_string()},
                {"type": "InternalIP", "address": lab.v6(node)?.to_string()},
                {"type": "Hostname", "address": node},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    Ok(node_object.to_string())
}

/// An EndpointSlice of Service `namespace/service` with one ready endpoint per node of
/// `nodes` (the node's address: the backends use the host network), `port` TCP named `name`.
pub fn endpoint_slice_yaml(
    lab: &Lab,
    namespace: &str,
    service: &str,
    ipv6: bool,
    nodes: &[String],
    ports: &[(&str, u16, &str)],
) -> Result<String, LabError> {
    let mut endpoints = Vec::new();
    for node in nodes {
        let address = if ipv6 {
            lab.v6(node)?.to_string()
        } else {
            lab.v4(node)?.to_string()
        };
        endpoints.push(serde_json::json!({
            "addresses": [address],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node,
        }));
    }
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port, protocol)| {
            serde_json::json!({"name": name, "port": port, "protocol": protocol})
        })
        .collect();
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-{}", family.to_lowercase()),
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports,
    });
    Ok(slice.to_string())
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, LabError> {
    let path = PathBuf::from("/dev/urandom");
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open(&path)
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(|source| LabError::File { path, source })?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}
