//! `ironlb crds`: print the `metallb.io` CustomResourceDefinitions generated from `ironlb-api`
//! (the source of `deploy/crds/metallb.io.yaml`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;

/// Flags of `ironlb crds` (none).
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {}

/// The header of the generated file.
const HEADER: &str =
    "# The metallb.io CustomResourceDefinitions, generated from crates/api by `ironlb crds`.\n\
# Do not edit: regenerate with `cargo run -p ironlb -- crds > deploy/crds/metallb.io.yaml`.\n";

/// Every CRD as one multi-document YAML text.
pub(crate) fn render() -> anyhow::Result<String> {
    let mut text = String::from(HEADER);
    for crd in ironlb_api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        text.push_str("---\n");
        text.push_str(
            &serde_yaml::to_string(&crd).with_context(|| format!("cannot encode CRD {name}"))?,
        );
    }
    Ok(text)
}

pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let text = render()?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}
