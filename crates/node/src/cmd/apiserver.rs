//! `ironlb apiserver …`: the in-memory Kubernetes API stand-in for demos and tests (never for
//! production). The logic lives in `ironlb-apiserver`; this module turns flags into a
//! [`ironlb_apiserver::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use ipnet::IpNet;

#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// Address to listen on, e.g. 127.0.0.1:6443 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Write a kubeconfig for kubectl and kube-rs to this file.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Start without ironlb's metallb.io CRDs (for tests that apply deploy/ themselves).
    #[arg(long)]
    no_crds: bool,
    /// Service CIDRs (repeatable; the first is the primary family).
    /// Default: 10.96.0.0/12 and fd00:10:96::/112.
    #[arg(long = "service-cidr", num_args = 1..)]
    service_cidrs: Vec<IpNet>,
    /// Also register every CRD found in *.yaml / *.yml files of this directory.
    #[arg(long)]
    crd_dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = ironlb_apiserver::Config {
        listen: args.listen,
        ..ironlb_apiserver::Config::default()
    };
    if !args.service_cidrs.is_empty() {
        config.service_cidrs = args.service_cidrs;
    }
    if !args.no_crds {
        for crd in ironlb_api::crds() {
            config
                .crds
                .push(serde_json::to_value(crd).context("cannot encode a metallb.io CRD")?);
        }
    }
    if let Some(dir) = &args.crd_dir {
        config.crds.extend(read_crd_dir(dir)?);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let handle = ironlb_apiserver::Server::start(config).await?;
        if let Some(path) = &args.kubeconfig_out {
            std::fs::write(path, handle.kubeconfig())
                .with_context(|| format!("cannot write kubeconfig {}", path.display()))?;
        }
        println!("listening on {}", handle.addr());
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for ctrl-c")?;
        handle.shutdown();
        Ok(ExitCode::SUCCESS)
    })
}

fn read_crd_dir(dir: &PathBuf) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut crds = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document)
                .with_context(|| format!("cannot parse {}", path.display()))?;
            if value.get("kind").and_then(serde_json::Value::as_str)
                == Some("CustomResourceDefinition")
            {
                crds.push(value);
            }
        }
    }
    Ok(crds)
}
