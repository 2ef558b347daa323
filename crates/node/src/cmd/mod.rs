//! One module per subcommand.

pub(crate) mod announce;
pub(crate) mod apiserver;
pub(crate) mod bgp_announce;
pub(crate) mod config;
pub(crate) mod controller;
pub(crate) mod convert;
pub(crate) mod crds;
pub(crate) mod demo;
pub(crate) mod lab;
pub(crate) mod plan;
pub(crate) mod speaker;
pub(crate) mod status;

/// The API client from `--kubeconfig FILE`, or as kube-rs infers it (`KUBECONFIG`, in-cluster).
pub(crate) async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<kube::Client> {
    use anyhow::Context;
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(
                file,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
            kube::Client::try_from(config).context("building the API client")
        }
        None => kube::Client::try_default()
            .await
            .context("inferring the API client configuration"),
    }
}
