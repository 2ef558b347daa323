//! Kubernetes label selectors as plain domain values.
//!
//! This crate owns one thing: deciding whether a set of labels matches a selector, with
//! Kubernetes' semantics (`matchLabels` AND `matchExpressions`; `NotIn` and `DoesNotExist` match
//! objects without the key; an empty selector matches everything). It parses the structured form
//! (built by `ironlb-api` from `metav1.LabelSelector`) and the string form used in `labelSelector`
//! query parameters (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
//!
//! It owns no IO and knows no Kubernetes types: callers convert into [`Selector`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Labels of an object, iterated in key order.
pub type Labels = BTreeMap<String, String>;

/// A validated label selector: every requirement must hold (AND).
///
/// The empty selector matches every object (Kubernetes' `labels.Everything()`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

/// The operator of a requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operator {
    /// The label is set to one of the values (`matchLabels`, `=`, `==`, `In`).
    In,
    /// The label is absent or set to none of the values (`!=`, `NotIn`).
    NotIn,
    /// The label is set, to any value.
    Exists,
    /// The label is not set.
    DoesNotExist,
}

/// Why a selector could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// An operator name that Kubernetes does not know.
    #[error(
        "unknown operator {operator:?} for key {key:?}: must be In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator {
        /// The key of the requirement.
        key: String,
        /// The operator as written.
        operator: String,
    },
    /// `In` and `NotIn` need at least one value.
    #[error("operator {operator:?} for key {key:?} needs at least one value")]
    ValuesRequired {
        /// The key of the requirement.
        key: String,
        /// The operator.
        operator: Operator,
    },
    /// `Exists` and `DoesNotExist` take no values.
    #[error("operator {operator:?} for key {key:?} takes no values")]
    ValuesForbidden {
        /// The key of the requirement.
        key: String,
        /// The operator.
        operator: Operator,
    },
    /// A key that is not a valid label key.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value that is not a valid label value.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key of the requirement.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The string form could not be parsed.
    #[error("unable to parse requirement {text:?}: {reason}")]
    Syntax {
        /// The part of the selector that failed.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Longest label value and name part, as Kubernetes validates them.
pub const LABEL_NAME_LEN_MAX: usize = 63;
/// Longest prefix (a DNS subdomain) of a label key.
pub const LABEL_PREFIX_LEN_MAX: usize = 253;

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Builds a selector from `matchLabels` and `matchExpressions` (key, operator name, values).
    pub fn from_parts<'a>(
        match_labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        match_expressions: impl IntoIterator<Item = (&'a str, &'a str, Vec<String>)>,
    ) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in match_labels {
            requirements.push(Requirement::new(key, Operator::In, [value.to_owned()])?);
        }
        for (key, operator, values) in match_expressions {
            let operator = match operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        key: key.to_owned(),
                        operator: other.to_owned(),
                    })
                }
            };
            requirements.push(Requirement::new(key, operator, values)?);
        }
        requirements.sort();
        Ok(Self { requirements })
    }

    /// Parses the string form (`labelSelector` query parameter syntax).
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        requirements.sort();
        Ok(Self { requirements })
    }

    /// True when this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in a canonical order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Requirement {
    /// Builds a checked requirement.
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let values: BTreeSet<String> = values.into_iter().collect();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::ValuesRequired {
                    key: key.to_owned(),
                    operator,
                })
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::ValuesForbidden {
                    key: key.to_owned(),
                    operator,
                })
            }
            _ => {}
        }
        for value in &values {
            validate_value(key, value)?;
        }
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (empty for `Exists` / `DoesNotExist`).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::In if self.values.len() == 1 => write!(f, "{}={}", self.key, joined()),
            Operator::In => write!(f, "{} in ({})", self.key, joined()),
            Operator::NotIn if self.values.len() == 1 => write!(f, "{}!={}", self.key, joined()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, joined()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(|| SelectorError::Syntax {
                    text: text.to_owned(),
                    reason: "unbalanced ')'",
                })?
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError::Syntax {
            text: text.to_owned(),
            reason: "unbalanced '('",
        });
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let syntax = |reason| SelectorError::Syntax {
        text: part.to_owned(),
        reason,
    };
    if let Some(key) = part.strip_prefix('!') {
        return Requirement::new(key.trim(), Operator::DoesNotExist, []);
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Requirement::new(key.trim(), Operator::NotIn, [value.trim().to_owned()]);
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Requirement::new(key.trim(), Operator::In, [value.trim().to_owned()]);
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Requirement::new(key, Operator::Exists, []);
    }
    let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
        (Operator::NotIn, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (Operator::In, list)
    } else {
        return Err(syntax("expected one of '=', '==', '!=', 'in', 'notin'"));
    };
    let list = list.trim();
    let inner = list
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| syntax("expected a parenthesised list of values"))?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    Requirement::new(key, operator, values)
}

fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > LABEL_PREFIX_LEN_MAX {
                return Err(invalid(
                    "prefix must be a DNS subdomain of 1 to 253 characters",
                ));
            }
            if !prefix.split('.').all(|l| {
                !l.is_empty() && is_alnum_dash(l) && !l.starts_with('-') && !l.ends_with('-')
            }) || prefix.chars().any(|c| c.is_ascii_uppercase())
            {
                return Err(invalid("prefix must be a lower-case DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > LABEL_NAME_LEN_MAX {
        return Err(invalid("name part must be 1 to 63 characters"));
    }
    if !is_qualified_name_part(name) {
        return Err(invalid(
            "name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        ));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > LABEL_NAME_LEN_MAX {
        return Err(SelectorError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: "must be at most 63 characters",
        });
    }
    if !is_qualified_name_part(value) {
        return Err(SelectorError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: "must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
        });
    }
    Ok(())
}

fn is_alnum_dash(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_qualified_name_part(s: &str) -> bool {
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    first_last_ok(s.chars().next())
        && first_last_ok(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn string_form_table() {
        struct Case {
            desc: &'static str,
            selector: &'static str,
            labels: &'static [(&'static str, &'static str)],
            want: bool,
        }
        let cases = [
            Case {
                desc: "empty matches all",
                selector: "",
                labels: &[],
                want: true,
            },
            Case {
                desc: "equals",
                selector: "a=b",
                labels: &[("a", "b")],
                want: true,
            },
            Case {
                desc: "double equals",
                selector: "a==b",
                labels: &[("a", "c")],
                want: false,
            },
            Case {
                desc: "not equals absent key",
                selector: "a!=b",
                labels: &[],
                want: true,
            },
            Case {
                desc: "in",
                selector: "app in (a, b)",
                labels: &[("app", "b")],
                want: true,
            },
            Case {
                desc: "in miss",
                selector: "app in (a,b)",
                labels: &[("app", "c")],
                want: false,
            },
            Case {
                desc: "notin absent",
                selector: "app notin (a)",
                labels: &[],
                want: true,
            },
            Case {
                desc: "exists",
                selector: "a",
                labels: &[("a", "")],
                want: true,
            },
            Case {
                desc: "not exists",
                selector: "!a",
                labels: &[("a", "x")],
                want: false,
            },
            Case {
                desc: "and",
                selector: "app in (a,b),!legacy,tier=web",
                labels: &[("app", "a"), ("tier", "web")],
                want: true,
            },
            Case {
                desc: "prefixed key",
                selector: "kubernetes.io/service-name=web",
                labels: &[("kubernetes.io/service-name", "web")],
                want: true,
            },
        ];
        for c in cases {
            let selector =
                Selector::parse(c.selector).unwrap_or_else(|e| panic!("{}: {e}", c.desc));
            assert_eq!(selector.matches(&labels(c.labels)), c.want, "{}", c.desc);
        }
    }

    #[test]
    fn string_form_errors() {
        for bad in [
            "a in b",
            "a in (",
            "a)",
            "a foo (b)",
            "-a=b",
            "a=-b",
            "app in ()",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn structured_form() {
        let s = Selector::from_parts(
            [("zone", "a")],
            [("role", "NotIn", vec!["edge".to_owned()])],
        )
        .unwrap();
        assert!(s.matches(&labels(&[("zone", "a")])));
        assert!(!s.matches(&labels(&[("zone", "a"), ("role", "edge")])));
        assert!(matches!(
            Selector::from_parts([], [("k", "Exists", vec!["x".to_owned()])]),
            Err(SelectorError::ValuesForbidden { .. })
        ));
        assert!(matches!(
            Selector::from_parts([], [("k", "In", vec![])]),
            Err(SelectorError::ValuesRequired { .. })
        ));
        assert!(matches!(
            Selector::from_parts([], [("k", "Equals", vec![])]),
            Err(SelectorError::UnknownOperator { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        let s = Selector::parse("b notin (x,y),a=1,!c,d").unwrap();
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }
}
