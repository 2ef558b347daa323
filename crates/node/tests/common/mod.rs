//! Helpers shared by `deploy.rs` and `docs_examples.rs`: paths, YAML documents, kubectl against
//! an in-process API stand-in.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use ironlb_apiserver::{Config, Server, ServerHandle};
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository as text.
pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every non-empty YAML document of a text, as JSON.
pub fn documents(text: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|error| panic!("not YAML: {error}"));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

/// Whether kubectl can run here; prints why not otherwise.
pub fn kubectl_available() -> bool {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(output) if output.status.success() => true,
        _ => {
            eprintln!("SKIP: kubectl is not installed (scripts/install-deps.sh installs it)");
            false
        }
    }
}

/// The output of a command as text, panicking when it cannot start.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A stand-in with no CRDs (tests apply deploy/ themselves).
pub async fn stand_in() -> ServerHandle {
    Server::start(Config::default())
        .await
        .unwrap_or_else(|error| panic!("stand-in did not start: {error}"))
}

/// A stand-in with ironlb's CRDs registered at start.
pub async fn stand_in_with_crds() -> ServerHandle {
    let crds = ironlb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap_or(Value::Null))
        .collect();
    Server::start(Config {
        crds,
        ..Config::default()
    })
    .await
    .unwrap_or_else(|error| panic!("stand-in did not start: {error}"))
}

/// kubectl with its own kubeconfig and cache directory.
pub struct Kubectl {
    dir: PathBuf,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl Kubectl {
    /// kubectl for a stand-in.
    pub fn new(handle: &ServerHandle) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ironlb-h5-kubectl-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{error}"));
        std::fs::write(dir.join("kubeconfig"), handle.kubeconfig())
            .unwrap_or_else(|error| panic!("{error}"));
        Self { dir }
    }

    /// The kubeconfig file kubectl uses.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Writes a file in the kubectl directory and returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap_or_else(|error| panic!("{error}"));
        path.display().to_string()
    }

    /// Runs kubectl (inside a multi-threaded tokio runtime: the worker is handed off while
    /// kubectl runs, so the in-process stand-in keeps serving).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        tokio::task::block_in_place(|| command.output())
            .unwrap_or_else(|error| panic!("kubectl: {error}"))
    }

    /// Runs kubectl and returns its output, panicking on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let text = text(&output);
        assert!(output.status.success(), "kubectl {args:?} failed:\n{text}");
        text
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
