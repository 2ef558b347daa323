//! `ironlb config …`: offline checks of metallb.io manifests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use ironlb_api::config::Config;
use ironlb_api::manifest::{load_paths, Object};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate metallb.io manifests exactly as the controller would.
    ///
    /// Reads IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer (v1beta2 and v1beta1),
    /// BFDProfile and Community objects, plus v1 Namespaces, Nodes and Secrets (used by
    /// namespaceSelectors, nodeSelectors and passwordSecret) and v1 Services (ignored here).
    /// MetalLB's legacy ConfigMap `config` is accepted too and checked after conversion; if
    /// metallb.io objects are present as well, they win and the ConfigMap is ignored.
    ///
    /// Exit status: 0 when the configuration is valid (warnings, for fields ironlb accepts
    /// but does not act on, go to stderr); 1 when it is not, with every problem on stderr,
    /// one per line, as `Kind/name: field: message`; 2 when the input cannot be read (a
    /// missing file, text that is not YAML, an unknown kind).
    #[command(verbatim_doc_comment)]
    Check {
        /// Files, directories (every *.yaml / *.yml inside, sorted) or `-` for standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { paths } => check(&paths),
    }
}

fn check(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let set = match load_paths(paths) {
        Ok(set) => set,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let inputs = set.config_inputs();
    let legacy = set.legacy_config_map().is_some();
    match Config::parse(&inputs) {
        Err(errors) => {
            for error in errors.errors() {
                eprintln!("{error}");
            }
            Ok(ExitCode::from(1))
        }
        Ok(config) => {
            if legacy {
                let has_crs = set.objects.iter().any(|loaded| {
                    matches!(
                        loaded.object,
                        Object::IPAddressPool(_)
                            | Object::L2Advertisement(_)
                            | Object::BGPAdvertisement(_)
                            | Object::BGPPeer(_)
                            | Object::BGPPeerV1beta1(_)
                            | Object::BFDProfile(_)
                            | Object::Community(_)
                    )
                });
                if has_crs {
                    eprintln!("warning: ConfigMap/config: data.config: ignored, metallb.io objects are present and win");
                } else {
                    eprintln!("warning: ConfigMap/config: data.config: the legacy ConfigMap is deprecated; apply the output of `ironlb convert-config` instead");
                }
            }
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            println!(
                "valid: {} IPAddressPool(s), {} L2Advertisement(s), {} BGPAdvertisement(s), {} BGPPeer(s), {} BFDProfile(s), {} community alias(es)",
                config.pools().len(),
                config.l2_advertisements().len(),
                config.bgp_advertisements().len(),
                config.peers().len(),
                config.bfd_profiles().len(),
                config.communities().len(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
