//! CEL `x-kubernetes-validations` on custom resources (reference §6.11): compiled when a CRD
//! is registered (a rule that does not compile, or uses a function this stand-in does not
//! provide, refuses the CRD), evaluated with `self` (and `oldSelf` on updates; transition rules
//! are skipped on create) on every write. The functions beyond CEL's standard library, and the
//! list of what a rule may call, live in `cel_k8s`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::cel_k8s;
use crate::error::Cause;

/// Where a rule sits in the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Property(String),
    Items,
    AdditionalProperties,
}

struct Rule {
    steps: Vec<Step>,
    source: String,
    message: Option<String>,
    /// `messageExpression`, evaluated for the message when the rule fails.
    message_expression: Option<Arc<cel::Program>>,
    /// `reason`: which kind of field error a failure is.
    reason: Reason,
    /// `fieldPath`, appended to the field a failure is reported on (`.gw`, `['a.b']`).
    field_path: String,
    /// Whether the rule reads `oldSelf` (then it only runs on updates, unless
    /// `optionalOldSelf`).
    transition: bool,
    /// `optionalOldSelf`: `oldSelf` is an optional, `optional.none()` on create.
    optional_old_self: bool,
    program: Arc<cel::Program>,
    env: Arc<cel::Env>,
}

/// The `reason` of a rule, as Kubernetes accepts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

impl Reason {
    fn parse(reason: Option<&str>) -> Result<Self, String> {
        match reason {
            None | Some("FieldValueInvalid") => Ok(Self::Invalid),
            Some("FieldValueForbidden") => Ok(Self::Forbidden),
            Some("FieldValueRequired") => Ok(Self::Required),
            Some("FieldValueDuplicate") => Ok(Self::Duplicate),
            Some(other) => Err(format!(
                "reason: Unsupported value: {other:?}: supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
            )),
        }
    }

    /// The cause a failed rule gives, as Kubernetes' `fieldErrorForReason` builds it.
    fn cause(self, field: String, type_label: &Value, message: String) -> Cause {
        match self {
            Self::Invalid => Cause::invalid(field, type_label, message),
            Self::Forbidden => Cause::forbidden(field, message),
            Self::Required => Cause::required(field, message),
            Self::Duplicate => Cause::duplicate(field, type_label),
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("steps", &self.steps)
            .field("source", &self.source)
            .finish()
    }
}

/// The compiled rules of one schema.
#[derive(Debug, Default)]
pub(crate) struct CompiledRules {
    rules: Vec<Rule>,
}

/// A rule that cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleError {
    /// Schema path of the rule (`openAPIV3Schema.properties[spec]`).
    pub(crate) path: String,
    pub(crate) rule: String,
    pub(crate) detail: String,
}

impl CompiledRules {
    /// Compiles every `x-kubernetes-validations` rule of a schema.
    pub(crate) fn compile(schema: &Value) -> Result<Self, Vec<RuleError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        collect(
            schema,
            &mut Vec::new(),
            "openAPIV3Schema",
            &mut rules,
            &mut errors,
        );
        if errors.is_empty() {
            Ok(Self { rules })
        } else {
            Err(errors)
        }
    }

    /// How many rules were compiled.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Evaluates every rule against `object` (and `old` on updates).
    pub(crate) fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        for rule in &self.rules {
            let mut targets = Vec::new();
            walk(object, old, &rule.steps, String::new(), &mut targets);
            for (field, value, old_value) in targets {
                if rule.transition && old_value.is_none() && !rule.optional_old_self {
                    continue;
                }
                let mut context = cel::Context::with_env(Arc::clone(&rule.env));
                context.add_variable_from_value("self", to_cel(value));
                if rule.optional_old_self {
                    let old_value = old_value.and_then(|old| {
                        Box::<dyn cel::common::value::Val>::try_from(to_cel(old)).ok()
                    });
                    let optional = match old_value {
                        Some(old) => cel::common::types::CelOptional::of(old),
                        None => cel::common::types::CelOptional::none(),
                    };
                    context.add_variable_as_val("oldSelf", Box::new(optional));
                } else if let Some(old_value) = old_value {
                    context.add_variable_from_value("oldSelf", to_cel(old_value));
                }
                let outcome = rule.program.execute(&context);
                let type_label = Value::String(json_type(value).to_string());
                match outcome {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => {
                        let message = rule
                            .message_expression
                            .as_ref()
                            .and_then(|program| match program.execute(&context) {
                                Ok(cel::Value::String(text))
                                    if !text.trim().is_empty() && !text.contains('\n') =>
                                {
                                    Some(text.to_string())
                                }
                                _ => None,
                            })
                            .unwrap_or_else(|| rule_message_or_default(rule));
                        causes.push(rule.reason.cause(
                            format!("{field}{}", rule.field_path),
                            &type_label,
                            message,
                        ));
                    }
                    Ok(other) => causes.push(Cause::invalid(
                        field.clone(),
                        &type_label,
                        format!("rule {} evaluated to {other:?}, not a bool", rule.source),
                    )),
                    Err(error) => causes.push(Cause::invalid(
                        field.clone(),
                        &type_label,
                        evaluation_error(&error, rule),
                    )),
                }
            }
        }
        causes
    }
}

/// Kubernetes' `ruleMessageOrDefault`: the message, or `failed rule: <rule>`.
fn rule_message_or_default(rule: &Rule) -> String {
    match &rule.message {
        Some(message) if !message.trim().is_empty() => message.trim().to_string(),
        _ => format!("failed rule: {}", rule.source.trim()),
    }
}

/// A `fieldPath` (`.a.b`, `['a.b']`, mixed) as the suffix of a cause's field: `.a.b`,
/// `[a.b]`.
fn parse_field_path(path: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err(format!(
                    "fieldPath: Invalid value: {path:?}: expected a field name"
                ));
            }
            out.push('.');
            out.push_str(name);
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            let Some(end) = after.find("']") else {
                return Err(format!(
                    "fieldPath: Invalid value: {path:?}: unterminated ['…']"
                ));
            };
            out.push('[');
            out.push_str(&after[..end]);
            out.push(']');
            rest = &after[end + 2..];
        } else {
            return Err(format!(
                "fieldPath: Invalid value: {path:?}: expected '.' or \"['\""
            ));
        }
    }
    Ok(out)
}

/// Compiles a CEL expression of a rule (its `rule` or `messageExpression`) and checks that it
/// calls only what the environment provides.
fn compile_expression(source: &str) -> Result<(Arc<cel::Env>, cel::Program), String> {
    let env = cel_k8s::env()?;
    let program = env.compile(source).map_err(|error| error.to_string())?;
    let unsupported = cel_k8s::unsupported_calls(program.expression());
    if unsupported.is_empty() {
        Ok((env, program))
    } else {
        Err(unsupported.join("; "))
    }
}

/// One `x-kubernetes-validations` entry, compiled.
fn compile_rule(entry: &Value, steps: &[Step], path: &str) -> Result<Rule, RuleError> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
    let source = text("rule").ok_or_else(|| RuleError {
        path: path.to_string(),
        rule: String::new(),
        detail: "rule is required".into(),
    })?;
    let refuse = |detail: String| RuleError {
        path: path.to_string(),
        rule: source.clone(),
        detail,
    };
    let (env, program) = compile_expression(&source).map_err(refuse)?;
    let message_expression = match text("messageExpression") {
        Some(expression) => Some(Arc::new(
            compile_expression(&expression)
                .map_err(|error| refuse(format!("messageExpression compilation failed: {error}")))?
                .1,
        )),
        None => None,
    };
    let reason = Reason::parse(entry.get("reason").and_then(Value::as_str)).map_err(refuse)?;
    let field_path = match text("fieldPath") {
        Some(field_path) => parse_field_path(&field_path).map_err(refuse)?,
        None => String::new(),
    };
    let transition = program.references().has_variable("oldSelf");
    Ok(Rule {
        steps: steps.to_vec(),
        source,
        message: text("message"),
        message_expression,
        reason,
        field_path,
        transition,
        optional_old_self: entry.get("optionalOldSelf").and_then(Value::as_bool) == Some(true),
        program: Arc::new(program),
        env,
    })
}

/// How Kubernetes words a rule that failed to evaluate: `<error> evaluating rule: <message or
/// rule>`, or, for a call no overload accepts, the signature-mismatch sentence.
fn evaluation_error(error: &cel::ExecutionError, rule: &Rule) -> String {
    let rule_text = rule
        .message
        .as_deref()
        .unwrap_or(&rule.source)
        .trim()
        .to_string();
    match error {
        cel::ExecutionError::NoSuchOverload(_) => format!(
            "'{error}': call arguments did not match a supported operator, function or macro signature for rule: {rule_text}"
        ),
        cel::ExecutionError::FunctionError { message, .. } => {
            format!("{message} evaluating rule: {rule_text}")
        }
        other => format!("{other} evaluating rule: {rule_text}"),
    }
}

fn collect(
    schema: &Value,
    steps: &mut Vec<Step>,
    path: &str,
    rules: &mut Vec<Rule>,
    errors: &mut Vec<RuleError>,
) {
    for entry in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match compile_rule(entry, steps, path) {
            Ok(rule) => rules.push(rule),
            Err(error) => errors.push(error),
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            steps.push(Step::Property(key.clone()));
            collect(
                child,
                steps,
                &format!("{path}.properties[{key}]"),
                rules,
                errors,
            );
            steps.pop();
        }
    }
    if let Some(items) = schema.get("items") {
        steps.push(Step::Items);
        collect(items, steps, &format!("{path}.items"), rules, errors);
        steps.pop();
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        steps.push(Step::AdditionalProperties);
        collect(
            additional,
            steps,
            &format!("{path}.additionalProperties"),
            rules,
            errors,
        );
        steps.pop();
    }
}

/// Every value the steps reach, with its field path and (where it correlates) its old value.
fn walk<'a>(
    value: &'a Value,
    old: Option<&'a Value>,
    steps: &[Step],
    field: String,
    out: &mut Vec<(String, &'a Value, Option<&'a Value>)>,
) {
    let Some((step, rest)) = steps.split_first() else {
        out.push((field, value, old));
        return;
    };
    match step {
        Step::Property(key) => {
            if let Some(child) = value.get(key) {
                let child_field = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                walk(child, old.and_then(|o| o.get(key)), rest, child_field, out);
            }
        }
        Step::Items => {
            // List elements correlate with old ones only for map lists in Kubernetes; without
            // the keys at hand, elements get no oldSelf (transition rules skip them).
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                walk(item, None, rest, format!("{field}[{index}]"), out);
            }
        }
        Step::AdditionalProperties => {
            for (key, child) in value.as_object().into_iter().flatten() {
                walk(
                    child,
                    old.and_then(|o| o.get(key)),
                    rest,
                    format!("{field}[{key}]"),
                    out,
                );
            }
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let converted: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(converted)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(rule: &str) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": rule, "message": "rule failed"}],
            "properties": {"a": {"type": "integer"}, "t": {"type": "string"}}}}})
    }

    #[test]
    fn rules_the_shipped_crds_use() {
        let cases = [
            (
                "!has(self.a) || self.a == 32",
                json!({"spec": {"a": 32}}),
                None,
                true,
            ),
            (
                "!has(self.a) || self.a == 32",
                json!({"spec": {"a": 31}}),
                None,
                false,
            ),
            (
                "!has(self.a) || self.a == 32",
                json!({"spec": {}}),
                None,
                true,
            ),
            (
                "size(self.t) > 2",
                json!({"spec": {"t": "abc"}}),
                None,
                true,
            ),
            (
                "duration(self.t).getSeconds() >= 1",
                json!({"spec": {"t": "1500ms"}}),
                None,
                true,
            ),
            (
                "duration(self.t).getMilliseconds() < 1000",
                json!({"spec": {"t": "2s"}}),
                None,
                false,
            ),
            (
                "self == oldSelf",
                json!({"spec": {"a": 1}}),
                Some(json!({"spec": {"a": 2}})),
                false,
            ),
            (
                "self == oldSelf",
                json!({"spec": {"a": 1}}),
                Some(json!({"spec": {"a": 1}})),
                true,
            ),
            ("self == oldSelf", json!({"spec": {"a": 1}}), None, true),
        ];
        for (rule, object, old, ok) in cases {
            let compiled = CompiledRules::compile(&schema(rule));
            let Ok(compiled) = compiled else {
                panic!("{rule} did not compile: {compiled:?}")
            };
            assert_eq!(compiled.len(), 1);
            let causes = compiled.validate(&object, old.as_ref());
            assert_eq!(causes.is_empty(), ok, "{rule} on {object}: {causes:?}");
            if !ok {
                assert_eq!(causes[0].field, "spec");
                assert!(causes[0].message.contains("rule failed"));
            }
        }
    }

    #[test]
    fn evaluation_errors_are_causes_worded_as_kubernetes() {
        let cases = [
            (
                "ip(self.t).family() == 4",
                json!({"spec": {"t": "bad"}}),
                "IP Address \"bad\" parse error",
                "evaluating rule: rule failed",
            ),
            (
                "cidr(self.t).containsIP('10.0.0.1')",
                json!({"spec": {"t": "10.0.0.0/40"}}),
                "prefix length out of range",
                "evaluating rule: rule failed",
            ),
            (
                "self.a.startsWith('x')",
                json!({"spec": {"a": 1}}),
                "found no matching overload for 'startsWith'",
                "call arguments did not match a supported operator, function or macro signature for rule: rule failed",
            ),
            (
                "[].min() == 1",
                json!({"spec": {}}),
                "min called on empty list",
                "evaluating rule: rule failed",
            ),
        ];
        for (rule, object, error, wording) in cases {
            let compiled = CompiledRules::compile(&schema(rule));
            let Ok(compiled) = compiled else {
                panic!("{rule} did not compile: {compiled:?}")
            };
            let causes = compiled.validate(&object, None);
            assert_eq!(causes.len(), 1, "{rule}: {causes:?}");
            assert_eq!(causes[0].field, "spec");
            assert!(
                causes[0].message.contains(error) && causes[0].message.contains(wording),
                "{rule}: {}",
                causes[0].message
            );
        }
    }

    fn schema_with(entry: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [entry],
            "properties": {"a": {"type": "integer"}, "t": {"type": "string"}}}}})
    }

    #[test]
    fn message_expression_field_path_reason_and_optional_old_self() {
        // (entry, object, old, expected (reason, field, message) of the one cause, or none)
        let cases = [
            (
                json!({"rule": "self.a < 10", "messageExpression": "'a is ' + string(self.a)"}),
                json!({"spec": {"a": 12}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec",
                    "Invalid value: \"object\": a is 12",
                )),
            ),
            (
                json!({"rule": "self.a < 10", "message": "too big", "messageExpression": "''"}),
                json!({"spec": {"a": 12}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec",
                    "Invalid value: \"object\": too big",
                )),
            ),
            (
                json!({"rule": "self.a < 10", "messageExpression": "1 / 0 == 1 ? 'x' : 'y'"}),
                json!({"spec": {"a": 12}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec",
                    "Invalid value: \"object\": failed rule: self.a < 10",
                )),
            ),
            (
                json!({"rule": "self.a < 10", "message": "too big", "fieldPath": ".a"}),
                json!({"spec": {"a": 12}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec.a",
                    "Invalid value: \"object\": too big",
                )),
            ),
            (
                json!({"rule": "self.a < 10", "message": "m", "fieldPath": "['x.y'].z"}),
                json!({"spec": {"a": 12}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec[x.y].z",
                    "Invalid value: \"object\": m",
                )),
            ),
            (
                json!({"rule": "has(self.t)", "message": "t is needed", "reason": "FieldValueRequired"}),
                json!({"spec": {}}),
                None,
                Some(("FieldValueRequired", "spec", "Required value: t is needed")),
            ),
            (
                json!({"rule": "!has(self.t)", "message": "no t", "reason": "FieldValueForbidden"}),
                json!({"spec": {"t": "x"}}),
                None,
                Some(("FieldValueForbidden", "spec", "Forbidden: no t")),
            ),
            (
                json!({"rule": "!has(self.t)", "reason": "FieldValueDuplicate"}),
                json!({"spec": {"t": "x"}}),
                None,
                Some(("FieldValueDuplicate", "spec", "Duplicate value: \"object\"")),
            ),
            (
                json!({"rule": "!oldSelf.hasValue() || self.a >= oldSelf.value().a", "message": "a only grows", "optionalOldSelf": true}),
                json!({"spec": {"a": 1}}),
                None,
                None,
            ),
            (
                json!({"rule": "oldSelf.hasValue() || self.a == 0", "message": "starts at 0", "optionalOldSelf": true}),
                json!({"spec": {"a": 1}}),
                None,
                Some((
                    "FieldValueInvalid",
                    "spec",
                    "Invalid value: \"object\": starts at 0",
                )),
            ),
            (
                json!({"rule": "!oldSelf.hasValue() || self.a >= oldSelf.value().a", "message": "a only grows", "optionalOldSelf": true}),
                json!({"spec": {"a": 1}}),
                Some(json!({"spec": {"a": 2}})),
                Some((
                    "FieldValueInvalid",
                    "spec",
                    "Invalid value: \"object\": a only grows",
                )),
            ),
        ];
        for (entry, object, old, want) in cases {
            let compiled = CompiledRules::compile(&schema_with(entry.clone()));
            let Ok(compiled) = compiled else {
                panic!("{entry} did not compile: {compiled:?}")
            };
            let causes = compiled.validate(&object, old.as_ref());
            let got: Vec<(&str, &str, &str)> = causes
                .iter()
                .map(|c| (c.reason, c.field.as_str(), c.message.as_str()))
                .collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{entry}");
        }
    }

    #[test]
    fn bad_rule_metadata_is_refused() {
        let cases = [
            (
                json!({"rule": "true", "messageExpression": "isSemver('1')"}),
                "messageExpression compilation failed: unsupported function: isSemver",
            ),
            (
                json!({"rule": "true", "messageExpression": "'a' +"}),
                "messageExpression compilation failed",
            ),
            (
                json!({"rule": "true", "reason": "FieldValueBad"}),
                "reason: Unsupported value",
            ),
            (
                json!({"rule": "true", "fieldPath": "a"}),
                "fieldPath: Invalid value",
            ),
            (
                json!({"rule": "true", "fieldPath": "['a"}),
                "fieldPath: Invalid value",
            ),
            (json!({"message": "no rule"}), "rule is required"),
        ];
        for (entry, detail) in cases {
            let result = CompiledRules::compile(&schema_with(entry.clone()));
            let Err(errors) = result else {
                panic!("{entry} should be refused")
            };
            assert!(
                errors.len() == 1 && errors[0].detail.contains(detail),
                "{entry}: {errors:?}"
            );
        }
    }

    #[test]
    fn uncompilable_rules_are_refused() {
        for rule in [
            "self.a ==",
            "isSemver(self.t)",
            "foo == 1",
            "self.t.reverse() == 'a'",
        ] {
            let result = CompiledRules::compile(&schema(rule));
            assert!(result.is_err(), "{rule} should be refused");
        }
    }
}
