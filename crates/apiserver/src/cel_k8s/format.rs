//! Kubernetes' format library (1.31+): `format.named(name)`, `format.<name>()` and
//! `<format>.validate(string)`, which is `optional.none()` for a valid string and otherwise
//! the validation messages apimachinery gives (`IsDNS1123Label`, `IsQualifiedName`, …).

use std::any::Any;
use std::sync::OnceLock;

use base64::Engine;
use cel::common::types::{CelList, CelOptional, CelString, Type, STRING_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env};
use regex::Regex;

use super::url::is_request_uri;
use super::{argument, string_argument, Args, Outcome};

static FORMAT_TYPE: Type = Type::new_unspecified_type("kubernetes.NamedFormat");

/// The named formats, in the order Kubernetes documents them.
const NAMES: [&str; 13] = [
    "dns1123Label",
    "dns1123Subdomain",
    "dns1035Label",
    "qualifiedName",
    "dns1123LabelPrefix",
    "dns1123SubdomainPrefix",
    "dns1035LabelPrefix",
    "labelValue",
    "uri",
    "uuid",
    "byte",
    "date",
    "datetime",
];

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The patterns the formats match, each compiled once.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    Dns1123Label,
    Dns1123Subdomain,
    Dns1035Label,
    QualifiedName,
    LabelValue,
    Uuid,
}

const UUID: &str = "(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}";

impl Pattern {
    /// The pattern as apimachinery spells it in its messages.
    fn text(self) -> &'static str {
        static SUBDOMAIN: OnceLock<String> = OnceLock::new();
        static LABEL_VALUE: OnceLock<String> = OnceLock::new();
        match self {
            Self::Dns1123Label => DNS1123_LABEL,
            Self::Dns1123Subdomain => {
                SUBDOMAIN.get_or_init(|| format!("{DNS1123_LABEL}(\\.{DNS1123_LABEL})*"))
            }
            Self::Dns1035Label => DNS1035_LABEL,
            Self::QualifiedName => QUALIFIED_NAME,
            Self::LabelValue => LABEL_VALUE.get_or_init(|| format!("({QUALIFIED_NAME})?")),
            Self::Uuid => UUID,
        }
    }

    /// Whether all of `value` matches.
    fn matches(self, value: &str) -> bool {
        static COMPILED: [OnceLock<Option<Regex>>; 6] = [const { OnceLock::new() }; 6];
        COMPILED[self as usize]
            .get_or_init(|| Regex::new(&format!("^(?:{})$", self.text())).ok())
            .as_ref()
            .is_some_and(|regex| regex.is_match(value))
    }
}

/// apimachinery's `RegexError`.
fn regex_error(message: &str, pattern: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{message} (e.g. {}regex used for validation is '{pattern}')",
        examples.join(" or ")
    )
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// apimachinery's `IsDNS1123Label`.
fn dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_len_error(63));
    }
    if !Pattern::Dns1123Label.matches(value) {
        if Pattern::Dns1123Subdomain.matches(value) {
            errors.push("must not contain dots".to_string());
        } else {
            errors.push(regex_error(
                DNS1123_LABEL_MESSAGE,
                DNS1123_LABEL,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

/// apimachinery's `IsDNS1123Subdomain`.
fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push(max_len_error(253));
    }
    if !Pattern::Dns1123Subdomain.matches(value) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_MESSAGE,
            Pattern::Dns1123Subdomain.text(),
            &["example.com"],
        ));
    }
    errors
}

/// apimachinery's `IsDNS1035Label`.
fn dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_len_error(63));
    }
    if !Pattern::Dns1035Label.matches(value) {
        errors.push(regex_error(
            DNS1035_LABEL_MESSAGE,
            DNS1035_LABEL,
            &["my-name", "abc-123"],
        ));
    }
    errors
}

/// apimachinery's `IsQualifiedName`.
fn qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                errors.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME, &["MyName", "my.name", "123-abc"])
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push(format!("name part {}", max_len_error(63)));
    }
    if !Pattern::QualifiedName.matches(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MESSAGE,
                QUALIFIED_NAME,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// apimachinery's `IsValidLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_len_error(63));
    }
    if !Pattern::LabelValue.matches(value) {
        errors.push(regex_error(
            LABEL_VALUE_MESSAGE,
            Pattern::LabelValue.text(),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// apimachinery's `maskTrailingDash`, which the `…Prefix` formats apply first.
fn mask_trailing_dash(value: &str) -> String {
    match value.strip_suffix('-') {
        Some(_) if value.len() > 1 => {
            let mut masked: String = value.chars().collect();
            masked.pop();
            masked.pop();
            masked.push('a');
            masked
        }
        _ => value.to_string(),
    }
}

/// Validates `value` against the format `name`: no messages when valid.
fn validate(name: &str, value: &str) -> Vec<String> {
    match name {
        "dns1123Label" => dns1123_label(value),
        "dns1123Subdomain" => dns1123_subdomain_errors(value),
        "dns1035Label" => dns1035_label(value),
        "qualifiedName" => qualified_name(value),
        "dns1123LabelPrefix" => dns1123_label(&mask_trailing_dash(value)),
        "dns1123SubdomainPrefix" => dns1123_subdomain_errors(&mask_trailing_dash(value)),
        "dns1035LabelPrefix" => dns1035_label(&mask_trailing_dash(value)),
        "labelValue" => label_value_errors(value),
        "uri" => is_request_uri(value).err().into_iter().collect(),
        "uuid" if !Pattern::Uuid.matches(value) => vec!["does not match the UUID format".into()],
        "byte"
            if base64::engine::general_purpose::STANDARD
                .decode(value)
                .is_err() =>
        {
            vec!["invalid base64".into()]
        }
        "date"
            if !(value.len() == 10
                && crate::meta::parse_rfc3339(&format!("{value}T00:00:00Z")).is_some()) =>
        {
            vec!["invalid date".into()]
        }
        "datetime" if crate::meta::parse_rfc3339(value).is_none() => {
            vec!["invalid datetime".into()]
        }
        _ => Vec::new(),
    }
}

/// A named format, as `format.named(…)` and `format.<name>()` return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Format(&'static str);

custom_val!(Format, FORMAT_TYPE);

/// Registers the format library's functions on `env`.
pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(FORMAT_TYPE.to_owned())?;
    env.add_overload("format.named", "format-named", vec![STRING_TYPE], named)?;
    env.add_member_overload(
        "validate",
        "format-validate",
        FORMAT_TYPE.to_owned(),
        vec![STRING_TYPE],
        validate_call,
    )?;
    // One zero-argument function per name; each must know its name, and overloads are plain
    // function pointers, hence one small function each.
    let constants: [(&str, cel::common::functions::Function); 13] = [
        ("format.dns1123Label", |_| constant("dns1123Label")),
        ("format.dns1123Subdomain", |_| constant("dns1123Subdomain")),
        ("format.dns1035Label", |_| constant("dns1035Label")),
        ("format.qualifiedName", |_| constant("qualifiedName")),
        ("format.dns1123LabelPrefix", |_| {
            constant("dns1123LabelPrefix")
        }),
        ("format.dns1123SubdomainPrefix", |_| {
            constant("dns1123SubdomainPrefix")
        }),
        ("format.dns1035LabelPrefix", |_| {
            constant("dns1035LabelPrefix")
        }),
        ("format.labelValue", |_| constant("labelValue")),
        ("format.uri", |_| constant("uri")),
        ("format.uuid", |_| constant("uuid")),
        ("format.byte", |_| constant("byte")),
        ("format.date", |_| constant("date")),
        ("format.datetime", |_| constant("datetime")),
    ];
    for (name, function) in constants {
        env.add_overload(name, name, vec![], function)?;
    }
    Ok(())
}

fn constant<'b, 'v>(name: &'static str) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(Format(name)))
}

fn named<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let name = string_argument(&args, 0)?;
    let found = NAMES.iter().find(|n| **n == name);
    Ok(CowVal::owned(match found {
        Some(name) => CelOptional::of(Box::new(Format(name))),
        None => CelOptional::none(),
    }))
}

fn validate_call<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let format = argument::<Format>(&args, 0)?;
    let value = string_argument(&args, 1)?;
    let errors = validate(format.0, value);
    if errors.is_empty() {
        return Ok(CowVal::owned(CelOptional::none()));
    }
    let list: Vec<Box<dyn Val + 'v>> = errors
        .into_iter()
        .map(|e| Box::new(CelString::from(e)) as Box<dyn Val + 'v>)
        .collect();
    Ok(CowVal::owned(CelOptional::of(Box::new(CelList::from(
        list,
    )))))
}
