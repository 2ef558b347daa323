//! API errors and their `Status` bodies (reference §6.13).

use serde_json::{json, Value};

/// One field-level cause of a 422 Invalid answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, …
    pub(crate) reason: &'static str,
    /// The field path, e.g. `spec.ports[0].port`.
    pub(crate) field: String,
    /// The human message, e.g. `Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub(crate) message: String,
}

impl Cause {
    /// `Invalid value: <value>: <detail>`.
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl AsRef<str>,
    ) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!(
                "Invalid value: {}: {}",
                render_value(value),
                detail.as_ref()
            ),
        }
    }

    /// `Required value[: detail]`.
    pub(crate) fn required(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        let detail = detail.as_ref();
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message: if detail.is_empty() {
                "Required value".to_string()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    /// `Unsupported value: <value>: supported values: …`.
    pub(crate) fn not_supported(
        field: impl Into<String>,
        value: &Value,
        allowed: &[String],
    ) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                allowed.join(", ")
            ),
        }
    }

    /// `Duplicate value: <value>`.
    pub(crate) fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", render_value(value)),
        }
    }

    /// `Forbidden: detail`.
    pub(crate) fn forbidden(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.as_ref()),
        }
    }

    /// `Too many: N: must have at most M items`.
    pub(crate) fn too_many(field: impl Into<String>, max: u64) -> Self {
        Self {
            reason: "FieldValueTooMany",
            field: field.into(),
            message: format!("Too many: must have at most {max} items"),
        }
    }

    /// `Too long: may not be longer than N`.
    pub(crate) fn too_long_chars(field: impl Into<String>, max: u64) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be longer than {max}"),
        }
    }

    /// `Too long: may not be more than N bytes`-style causes.
    pub(crate) fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }
}

fn render_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

/// An error answered to a client as a `Status` object.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// The HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut details = json!({ "name": name, "kind": kind });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        self.details = Some(details);
        self
    }

    /// 404 for a missing object; `resource` is the plural, `group` its group.
    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(name, group, resource)
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_no_details()
    }

    fn with_no_details(mut self) -> Self {
        self.details = Some(json!({}));
        self
    }

    /// 409 AlreadyExists.
    pub(crate) fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(name, group, resource)
    }

    /// 409 Conflict for a stale resourceVersion or a failed precondition.
    pub(crate) fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 409 Conflict with a custom message (precondition failures).
    pub(crate) fn conflict_message(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                qualified(group, resource)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 422 Invalid with one cause per field.
    pub(crate) fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let kind_qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let summary: Vec<String> = causes
            .iter()
            .map(|cause| {
                if cause.field.is_empty() {
                    cause.message.clone()
                } else {
                    format!("{}: {}", cause.field, cause.message)
                }
            })
            .collect();
        let summary = if summary.len() == 1 {
            summary.join("")
        } else {
            format!("[{}]", summary.join(", "))
        };
        let mut error = Self::new(
            422,
            "Invalid",
            format!("{kind_qualified} \"{name}\" is invalid: {summary}"),
        )
        .with_details(name, group, kind);
        if let Some(details) = error.details.as_mut() {
            details["causes"] = Value::Array(
                causes
                    .iter()
                    .map(|cause| json!({"reason": cause.reason, "message": cause.message, "field": cause.field}))
                    .collect(),
            );
        }
        error
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 415 UnsupportedMediaType.
    pub(crate) fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 403 Forbidden.
    pub(crate) fn forbidden(
        group: &str,
        resource: &str,
        name: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::new(403, "Forbidden", message).with_details(name, group, resource)
    }

    /// 405 MethodNotAllowed.
    pub(crate) fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
        .with_no_details()
    }

    /// 410 Expired (too old resourceVersion).
    pub(crate) fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub(crate) fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// 429 TooManyRequests (test hook).
    pub(crate) fn too_many_requests() -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
    }

    /// A custom code and reason (test hooks).
    pub(crate) fn custom(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `services`, or `ipaddresspools.metallb.io` for a group.
pub(crate) fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_match_the_reference() {
        let cases = [
            (
                ApiError::not_found("metallb.io", "ipaddresspools", "a"),
                404,
                "NotFound",
                "ipaddresspools.metallb.io \"a\" not found",
            ),
            (ApiError::already_exists("", "services", "web"), 409, "AlreadyExists", "services \"web\" already exists"),
            (
                ApiError::conflict("", "services", "web"),
                409,
                "Conflict",
                "Operation cannot be fulfilled on services \"web\": the object has been modified; please apply your changes to the latest version and try again",
            ),
        ];
        for (error, code, reason, message) in cases {
            let status = error.status();
            assert_eq!(status["code"], code);
            assert_eq!(status["reason"], reason);
            assert_eq!(status["message"], message);
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["status"], "Failure");
        }
        let invalid = ApiError::invalid(
            "metallb.io",
            "BFDProfile",
            "p",
            vec![Cause::invalid(
                "spec.receiveInterval",
                &json!(5),
                "should be greater than or equal to 10",
            )],
        );
        assert_eq!(
            invalid.status()["message"],
            "BFDProfile.metallb.io \"p\" is invalid: spec.receiveInterval: Invalid value: 5: should be greater than or equal to 10"
        );
        assert_eq!(
            invalid.status()["details"]["causes"][0]["field"],
            "spec.receiveInterval"
        );
    }
}
