//! `ironlb convert-config FILE`: MetalLB's legacy `config` ConfigMap → the equivalent
//! metallb.io objects, as multi-document YAML on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use ironlb_api::legacy::convert_config_map;
use ironlb_api::manifest::load_paths;

/// Convert MetalLB's legacy ConfigMap (`config`, key `config`) into metallb.io objects.
///
/// The rules are those of MetalLB's `configmaptocrs`: pools keep their names; each layer2
/// pool gets an L2Advertisement `l2advertisement<N>`; each BGP advertisement becomes
/// `bgpadvertisement<N>`; peers become v1beta2 BGPPeers `peer<N>`; `bgp-communities` becomes
/// the Community `communities`; names are lower-cased with `_` turned into `-`.
///
/// Exit status: 0 on success; 1 when the ConfigMap's content is invalid; 2 when FILE cannot be
/// read or holds no such ConfigMap.
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// A YAML file holding the ConfigMap, or `-` for standard input.
    file: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let set = match load_paths(std::slice::from_ref(&args.file)) {
        Ok(set) => set,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(map) = set.legacy_config_map() else {
        eprintln!(
            "error: {}: no ConfigMap named \"config\" with a \"config\" key (in namespace metallb-system)",
            args.file.display()
        );
        return Ok(ExitCode::from(2));
    };
    match convert_config_map(map) {
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::from(1))
        }
        Ok(resources) => {
            print!("{}", resources.to_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
