//! Label and field selectors on lists and watches (reference §6.7).

use serde_json::Value;

use crate::error::ApiError;
use crate::meta::{labels_of, lookup};
use crate::registry::{ResourceInfo, Strategy};

/// A parsed field selector: every term must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// Label plus field selector of one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selectors {
    pub(crate) labels: ironlb_labels::Selector,
    pub(crate) fields: FieldSelector,
}

impl Selectors {
    /// Parses the query parameters; errors are 400.
    pub(crate) fn parse(
        info: &ResourceInfo,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match labels {
            Some(text) if !text.trim().is_empty() => {
                ironlb_labels::Selector::parse(text).map_err(|error| {
                    ApiError::bad_request(format!("unable to parse requirement: {error}"))
                })?
            }
            _ => ironlb_labels::Selector::everything(),
        };
        let fields = match fields {
            Some(text) if !text.trim().is_empty() => FieldSelector::parse(info, text)?,
            _ => FieldSelector::default(),
        };
        Ok(Self { labels, fields })
    }

    /// Whether a stored object matches.
    pub(crate) fn matches(&self, info: &ResourceInfo, object: &Value) -> bool {
        (self.labels.is_everything() || self.labels.matches(&labels_of(object)))
            && self.fields.matches(info, object)
    }

    /// Whether every object matches (no filtering needed).
    pub(crate) fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.terms.is_empty()
    }
}

impl FieldSelector {
    fn parse(info: &ResourceInfo, text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((field, value)) = term.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !supported(info, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    /// Whether an object matches every term.
    pub(crate) fn matches(&self, info: &ResourceInfo, object: &Value) -> bool {
        self.terms.iter().all(|(field, equal, expected)| {
            let actual = field_value(info, object, field);
            (actual == *expected) == *equal
        })
    }
}

fn supported(info: &ResourceInfo, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match info.strategy {
        Strategy::Pod => matches!(
            field,
            "spec.nodeName"
                | "status.phase"
                | "status.podIP"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
        ),
        Strategy::Node => field == "spec.unschedulable",
        Strategy::CoreEvent => {
            matches!(
                field,
                "involvedObject.kind"
                    | "involvedObject.namespace"
                    | "involvedObject.name"
                    | "involvedObject.uid"
                    | "involvedObject.apiVersion"
                    | "involvedObject.resourceVersion"
                    | "involvedObject.fieldPath"
                    | "reason"
                    | "type"
                    | "reportingComponent"
                    | "source"
            )
        }
        Strategy::EventsV1 => matches!(
            field,
            "regarding.kind"
                | "regarding.namespace"
                | "regarding.name"
                | "regarding.uid"
                | "reason"
                | "type"
                | "reportingController"
        ),
        Strategy::Namespace => field == "status.phase",
        Strategy::Generic => info.kind == "Secret" && field == "type",
        _ => false,
    }
}

/// The selector value of a field on a stored object (core form for events).
fn field_value(info: &ResourceInfo, object: &Value, field: &str) -> String {
    let path = match (info.strategy, field) {
        (Strategy::EventsV1, field) if field.starts_with("regarding.") => {
            field.replacen("regarding.", "involvedObject.", 1)
        }
        (Strategy::EventsV1, "reportingController") => "reportingComponent".to_string(),
        (Strategy::CoreEvent, "source") => "source.component".to_string(),
        _ => field.to_string(),
    };
    match lookup(object, &path) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::Number(number)) => number.to_string(),
        // Unset booleans select as "false" (Nodes' spec.unschedulable, Pods' spec.hostNetwork).
        None if matches!(field, "spec.unschedulable" | "spec.hostNetwork") => "false".into(),
        _ => String::new(),
    }
}
