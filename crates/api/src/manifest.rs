//! Reading manifests: files, directories and standard input, multi-document YAML, each object
//! typed by `apiVersion` and `kind`.
//!
//! [`load_paths`] fails (a [`LoadError`], exit code 2 in the CLI) only when input cannot be
//! read at all: a missing file, text that is not YAML, an object without `apiVersion`/`kind`,
//! or a kind ironlb does not know. An object of a known kind whose fields do not decode (a
//! string where a list belongs) is a configuration problem instead, reported through
//! [`ConfigInputs::problems`] with the object's kind, name and field.

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{ConfigError, ConfigInputs};
use crate::crd::bgp_peer::v1beta1;
use crate::crd::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use crate::legacy;

/// Where one object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file (`-` for standard input).
    pub path: PathBuf,
    /// The 1-based index of the YAML document in that file.
    pub document: usize,
}

/// One typed object.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // Objects are read once; boxing would only add noise.
pub enum Object {
    /// `metallb.io/v1beta1` `IPAddressPool`.
    IPAddressPool(IPAddressPool),
    /// `metallb.io/v1beta1` `L2Advertisement`.
    L2Advertisement(L2Advertisement),
    /// `metallb.io/v1beta1` `BGPAdvertisement`.
    BGPAdvertisement(BGPAdvertisement),
    /// `metallb.io/v1beta2` `BGPPeer`.
    BGPPeer(BGPPeer),
    /// `metallb.io/v1beta1` `BGPPeer`, as written (converted in [`ManifestSet::config_inputs`]).
    BGPPeerV1beta1(v1beta1::BGPPeer),
    /// `metallb.io/v1beta1` `BFDProfile`.
    BFDProfile(BFDProfile),
    /// `metallb.io/v1beta1` `Community`.
    Community(Community),
    /// `v1` `Service`.
    Service(Service),
    /// `v1` `Namespace`.
    Namespace(Namespace),
    /// `v1` `Node`.
    Node(Node),
    /// `v1` `Secret`.
    Secret(Secret),
    /// `v1` `ConfigMap` (the legacy `config` ConfigMap is converted; others are ignored).
    ConfigMap(ConfigMap),
}

/// One object and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedObject {
    /// Its file and document.
    pub source: Source,
    /// The object.
    pub object: Object,
}

/// Every object read, in input order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestSet {
    /// The objects, in input order (files in argument order, directory entries sorted by
    /// name, documents in file order, `List` items in list order).
    pub objects: Vec<LoadedObject>,
    /// The `v1` Services among them, in input order.
    pub services: Vec<Service>,
    /// Objects of a known kind that did not decode, as configuration problems.
    pub problems: Vec<ConfigError>,
}

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{path}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// A document is not an object with `apiVersion` and `kind`.
    #[error("{path}: document {document}: not a Kubernetes object (needs apiVersion and kind)")]
    NotAnObject {
        /// The file.
        path: String,
        /// The 1-based document index.
        document: usize,
    },
    /// A kind ironlb does not read.
    #[error("{path}: document {document}: unknown kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind {
        /// The file.
        path: String,
        /// The 1-based document index.
        document: usize,
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
}

/// Reads every path: a file, a directory (its `*.yaml` and `*.yml` files, sorted by name, not
/// recursive) or `-` for standard input.
pub fn load_paths(paths: &[PathBuf]) -> Result<ManifestSet, LoadError> {
    let mut set = ManifestSet::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Read {
                    path: "-".to_owned(),
                    source,
                })?;
            set.add_text(path, &text)?;
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|source| read_error(path, source))?;
        if metadata.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|source| read_error(path, source))? {
                let entry = entry.map_err(|source| read_error(path, source))?;
                let file = entry.path();
                let is_yaml = file
                    .extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "yml");
                if is_yaml && file.is_file() {
                    files.push(file);
                }
            }
            files.sort();
            for file in files {
                set.add_file(&file)?;
            }
        } else {
            set.add_file(path)?;
        }
    }
    Ok(set)
}

/// Reads objects from YAML text (one or more documents); `name` is used in errors.
pub fn load_str(name: &Path, text: &str) -> Result<ManifestSet, LoadError> {
    let mut set = ManifestSet::default();
    set.add_text(name, text)?;
    Ok(set)
}

fn read_error(path: &Path, source: std::io::Error) -> LoadError {
    LoadError::Read {
        path: path.display().to_string(),
        source,
    }
}

impl ManifestSet {
    fn add_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| read_error(path, source))?;
        self.add_text(path, &text)
    }

    fn add_text(&mut self, path: &Path, text: &str) -> Result<(), LoadError> {
        let mut documents = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            let value =
                serde_yaml::Value::deserialize(document).map_err(|error| LoadError::Yaml {
                    path: path.display().to_string(),
                    message: error.to_string(),
                })?;
            documents.push(value);
        }
        for (index, value) in documents.into_iter().enumerate() {
            let source = Source {
                path: path.to_owned(),
                document: index + 1,
            };
            // Empty documents (`---` at the end of a file) are allowed.
            if value.is_null() {
                continue;
            }
            self.add_value(&source, value)?;
        }
        Ok(())
    }

    fn add_value(&mut self, source: &Source, value: serde_yaml::Value) -> Result<(), LoadError> {
        let not_an_object = || LoadError::NotAnObject {
            path: source.path.display().to_string(),
            document: source.document,
        };
        let api_version = value
            .get("apiVersion")
            .and_then(serde_yaml::Value::as_str)
            .ok_or_else(not_an_object)?
            .to_owned();
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .ok_or_else(not_an_object)?
            .to_owned();
        if kind == "List" && api_version == "v1" {
            let items = match value.get("items") {
                None | Some(serde_yaml::Value::Null) => Vec::new(),
                Some(serde_yaml::Value::Sequence(items)) => items.clone(),
                Some(_) => return Err(not_an_object()),
            };
            for item in items {
                self.add_value(source, item)?;
            }
            return Ok(());
        }
        // MetalLB's kinds declare `spec` with `omitempty`: an object without one (an
        // L2Advertisement for every pool and node) is valid and means an empty spec.
        let mut value = value;
        if api_version.starts_with("metallb.io/") {
            if let serde_yaml::Value::Mapping(mapping) = &mut value {
                let spec = mapping
                    .entry(serde_yaml::Value::from("spec"))
                    .or_insert(serde_yaml::Value::Null);
                if spec.is_null() {
                    *spec = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
                }
            }
        }
        let object = match (api_version.as_str(), kind.as_str()) {
            ("metallb.io/v1beta1", "IPAddressPool") => {
                self.decode(&kind, value).map(Object::IPAddressPool)
            }
            ("metallb.io/v1beta1", "L2Advertisement") => {
                self.decode(&kind, value).map(Object::L2Advertisement)
            }
            ("metallb.io/v1beta1", "BGPAdvertisement") => {
                self.decode(&kind, value).map(Object::BGPAdvertisement)
            }
            ("metallb.io/v1beta2", "BGPPeer") => self.decode(&kind, value).map(Object::BGPPeer),
            ("metallb.io/v1beta1", "BGPPeer") => {
                self.decode(&kind, value).map(Object::BGPPeerV1beta1)
            }
            ("metallb.io/v1beta1", "BFDProfile") => {
                self.decode(&kind, value).map(Object::BFDProfile)
            }
            ("metallb.io/v1beta1", "Community") => self.decode(&kind, value).map(Object::Community),
            ("v1", "Service") => self.decode(&kind, value).map(Object::Service),
            ("v1", "Namespace") => self.decode(&kind, value).map(Object::Namespace),
            ("v1", "Node") => self.decode(&kind, value).map(Object::Node),
            ("v1", "Secret") => self.decode(&kind, value).map(Object::Secret),
            ("v1", "ConfigMap") => self.decode(&kind, value).map(Object::ConfigMap),
            _ => {
                return Err(LoadError::UnknownKind {
                    path: source.path.display().to_string(),
                    document: source.document,
                    api_version,
                    kind,
                })
            }
        };
        if let Some(object) = object {
            if let Object::Service(service) = &object {
                self.services.push(service.clone());
            }
            self.objects.push(LoadedObject {
                source: source.clone(),
                object,
            });
        }
        Ok(())
    }

    /// Decodes a known kind; a failure becomes a configuration problem naming the object.
    fn decode<T: DeserializeOwned>(&mut self, kind: &str, value: serde_yaml::Value) -> Option<T> {
        let name = value
            .get("metadata")
            .and_then(|metadata| metadata.get("name"))
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("<unnamed>")
            .to_owned();
        match serde_yaml::from_value(value) {
            Ok(object) => Some(object),
            Err(error) => {
                let message = error.to_string();
                let field = missing_field(&message).unwrap_or_else(|| "spec".to_owned());
                self.problems
                    .push(ConfigError::new(kind, name, field, message));
                None
            }
        }
    }

    /// The configuration objects, for [`Config::parse`](crate::config::Config::parse).
    ///
    /// `v1beta1` BGPPeers are converted to `v1beta2`. When no `metallb.io` object is present
    /// and a legacy ConfigMap `config` (key `config`) is, the ConfigMap is converted into the
    /// equivalent objects (`crate::legacy`); when both are present, the objects win and the
    /// ConfigMap is ignored, as ironlb does in a cluster.
    pub fn config_inputs(&self) -> ConfigInputs {
        let mut inputs = ConfigInputs {
            problems: self.problems.clone(),
            ..ConfigInputs::default()
        };
        let mut legacy_map = None;
        for loaded in &self.objects {
            match &loaded.object {
                Object::IPAddressPool(object) => inputs.pools.push(object.clone()),
                Object::L2Advertisement(object) => inputs.l2_advertisements.push(object.clone()),
                Object::BGPAdvertisement(object) => inputs.bgp_advertisements.push(object.clone()),
                Object::BGPPeer(object) => inputs.bgp_peers.push(object.clone()),
                Object::BGPPeerV1beta1(object) => {
                    inputs.bgp_peers.push(object.clone().into_v1beta2());
                }
                Object::BFDProfile(object) => inputs.bfd_profiles.push(object.clone()),
                Object::Community(object) => inputs.communities.push(object.clone()),
                Object::Namespace(object) => inputs.namespaces.push(object.clone()),
                Object::Node(object) => inputs.nodes.push(object.clone()),
                Object::Secret(object) => inputs.secrets.push(object.clone()),
                Object::ConfigMap(map) if legacy::is_legacy_config(map) => {
                    if legacy_map.is_none() {
                        legacy_map = Some(map);
                    }
                }
                Object::ConfigMap(_) | Object::Service(_) => {}
            }
        }
        if let Some(map) = legacy_map {
            if inputs.has_no_metallb_objects() {
                match legacy::convert_config_map(map) {
                    Ok(resources) => resources.extend_inputs(&mut inputs),
                    Err(error) => inputs.problems.push(error),
                }
            }
        }
        inputs
    }

    /// The legacy `config` ConfigMap, if one was read.
    pub fn legacy_config_map(&self) -> Option<&ConfigMap> {
        self.objects.iter().find_map(|loaded| match &loaded.object {
            Object::ConfigMap(map) if legacy::is_legacy_config(map) => Some(map),
            _ => None,
        })
    }
}

/// `missing field `x`` → `spec.x` (serde names only the last path element).
fn missing_field(message: &str) -> Option<String> {
    let rest = message.split("missing field `").nth(1)?;
    let field = rest.split('`').next()?;
    Some(match field {
        "apiVersion" | "kind" | "metadata" | "spec" => field.to_owned(),
        other => format!("spec.{other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ManifestSet, LoadError> {
        load_str(Path::new("test.yaml"), text)
    }

    #[test]
    fn multi_document_input_keeps_order_and_types() {
        let set = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\n---\n\
             apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [10.0.0.0/24]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\n---\n\
             apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: old}\nspec: {myASN: 1, peerASN: 2, peerAddress: 10.1.1.1}\n---\n",
        )
        .unwrap();
        let names: Vec<_> = set
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(set.objects.len(), 4);
        assert_eq!(set.objects[1].source.document, 2);
        let inputs = set.config_inputs();
        assert_eq!(inputs.pools.len(), 1);
        assert!(
            inputs.pools[0].spec.auto_assign,
            "autoAssign defaults to true"
        );
        assert_eq!(inputs.bgp_peers[0].spec.peer_port, 179);
        assert!(inputs.problems.is_empty());
    }

    #[test]
    fn list_items_are_expanded() {
        let set = load(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: x}\n",
        )
        .unwrap();
        assert!(matches!(set.objects[0].object, Object::Namespace(_)));
    }

    #[test]
    fn unreadable_input_is_a_load_error() {
        let cases = [
            ("not yaml", "a: [b\n", "not valid YAML"),
            ("no kind", "apiVersion: v1\n", "not a Kubernetes object"),
            ("scalar", "hello\n", "not a Kubernetes object"),
            (
                "unknown kind",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
                "unknown kind \"Deployment\"",
            ),
            (
                "unknown version",
                "apiVersion: metallb.io/v1alpha1\nkind: AddressPool\n",
                "unknown kind \"AddressPool\"",
            ),
        ];
        for (desc, text, want) in cases {
            let error = load(text).unwrap_err().to_string();
            assert!(error.contains(want), "{desc}: {error}");
            assert!(error.contains("test.yaml"), "{desc}: {error}");
        }
        let missing = load_paths(&[PathBuf::from("/nonexistent/ironlb.yaml")]).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/ironlb.yaml"));
    }

    #[test]
    fn undecodable_known_kind_is_a_config_problem() {
        let set = load(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {autoAssign: true}\n",
        )
        .unwrap();
        let problems = set.config_inputs().problems;
        assert_eq!(problems.len(), 1);
        let rendered = problems[0].to_string();
        assert!(
            rendered.starts_with("IPAddressPool/p: spec.addresses: "),
            "{rendered}"
        );
    }

    #[test]
    fn legacy_config_map_is_used_only_without_crs() {
        let map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n\
                   data:\n  config: |\n    address-pools:\n    - name: default\n      protocol: layer2\n      addresses: [172.25.1.100-172.25.1.200]\n";
        let inputs = load(map).unwrap().config_inputs();
        assert_eq!(inputs.pools[0].metadata.name.as_deref(), Some("default"));
        assert_eq!(inputs.l2_advertisements.len(), 1);
        let both = format!(
            "{map}---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: cr}}\nspec: {{addresses: [10.0.0.0/24]}}\n"
        );
        let inputs = load(&both).unwrap().config_inputs();
        assert_eq!(inputs.pools.len(), 1);
        assert_eq!(inputs.pools[0].metadata.name.as_deref(), Some("cr"));
        assert!(inputs.l2_advertisements.is_empty());
    }
}
