//! Every manifest in `examples/` is a valid configuration (the library half of
//! `ironlb config check examples/…`; the CLI half is in `crates/node/tests/config_check.rs`).

use std::path::{Path, PathBuf};

use ironlb_api::config::Config;
use ironlb_api::manifest::load_paths;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn every_example_parses() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples()).expect("examples/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let set = load_paths(std::slice::from_ref(&path)).expect("example loads");
        let config = Config::parse(&set.config_inputs())
            .unwrap_or_else(|errors| panic!("{}:\n{errors}", path.display()));
        assert!(!config.pools().is_empty(), "{}", path.display());
        assert!(
            !set.services.is_empty(),
            "{}: has Services for `ironlb plan`",
            path.display()
        );
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "bgp.yaml",
            "dual-stack.yaml",
            "l2-range.yaml",
            "legacy-configmap.yaml",
            "service-allocation.yaml",
            "sharing.yaml"
        ]
    );
}

#[test]
fn the_examples_directory_is_one_valid_configuration() {
    let set = load_paths(&[examples()]).expect("examples/ loads");
    let config = Config::parse(&set.config_inputs()).unwrap_or_else(|errors| panic!("{errors}"));
    // The legacy ConfigMap is ignored because metallb.io objects are present.
    assert!(!config.pools().keys().any(|name| name.0 == "default-l2"));
}

#[test]
fn legacy_example_converts_by_configmaptocrs_rules() {
    let set = load_paths(&[examples().join("legacy-configmap.yaml")]).expect("loads");
    let inputs = set.config_inputs();
    let names =
        |metas: Vec<Option<String>>| metas.into_iter().map(Option::unwrap).collect::<Vec<_>>();
    assert_eq!(
        names(
            inputs
                .pools
                .iter()
                .map(|o| o.metadata.name.clone())
                .collect()
        ),
        ["default-l2", "bgp"]
    );
    assert_eq!(
        names(
            inputs
                .l2_advertisements
                .iter()
                .map(|o| o.metadata.name.clone())
                .collect()
        ),
        ["l2advertisement1"]
    );
    assert_eq!(
        names(
            inputs
                .bgp_advertisements
                .iter()
                .map(|o| o.metadata.name.clone())
                .collect()
        ),
        ["bgpadvertisement1", "bgpadvertisement2"]
    );
    assert_eq!(inputs.bgp_peers[0].metadata.name.as_deref(), Some("peer1"));
    assert_eq!(inputs.bgp_peers[0].spec.hold_time.as_deref(), Some("2m0s"));
    assert_eq!(
        inputs.bgp_peers[0].spec.bfd_profile.as_deref(),
        Some("full-bfd")
    );
    assert_eq!(
        inputs.bfd_profiles[0].metadata.name.as_deref(),
        Some("full-bfd")
    );
    assert_eq!(
        inputs.communities[0].metadata.name.as_deref(),
        Some("communities")
    );
    assert!(inputs.pools[1].spec.avoid_buggy_ips);
    let config = Config::parse(&inputs).expect("converted legacy config is valid");
    assert_eq!(config.bgp_advertisements()[0].local_pref(), 100);
}
