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
    reason: Option<String>,
    transition: bool,
    program: Arc<cel::Program>,
    env: Arc<cel::Env>,
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
                if rule.transition && old_value.is_none() {
                    continue;
                }
                let mut context = cel::Context::with_env(Arc::clone(&rule.env));
                context.add_variable_from_value("self", to_cel(value));
                if let Some(old_value) = old_value {
                    context.add_variable_from_value("oldSelf", to_cel(old_value));
                }
                let outcome = rule.program.execute(&context);
                let type_label = Value::String(json_type(value).to_string());
                match outcome {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => {
                        let message = rule
                            .message
                            .clone()
                            .unwrap_or_else(|| format!("failed rule: {}", rule.source));
                        let mut cause = Cause::invalid(field.clone(), &type_label, message);
                        if rule.reason.as_deref() == Some("FieldValueForbidden") {
                            cause.reason = "FieldValueForbidden";
                        }
                        causes.push(cause);
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
        let Some(source) = entry.get("rule").and_then(Value::as_str) else {
            errors.push(RuleError {
                path: path.to_string(),
                rule: String::new(),
                detail: "rule is required".into(),
            });
            continue;
        };
        let compiled = cel_k8s::env().and_then(|env| {
            env.compile(source)
                .map_err(|error| error.to_string())
                .map(|program| (env, program))
        });
        match compiled {
            Ok((env, program)) => {
                let unsupported = cel_k8s::unsupported_calls(program.expression());
                if !unsupported.is_empty() {
                    errors.push(RuleError {
                        path: path.to_string(),
                        rule: source.to_string(),
                        detail: unsupported.join("; "),
                    });
                    continue;
                }
                let references = program.references();
                let transition = references.has_variable("oldSelf");
                rules.push(Rule {
                    steps: steps.clone(),
                    source: source.to_string(),
                    message: entry
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    reason: entry
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    transition,
                    program: Arc::new(program),
                    env,
                });
            }
            Err(detail) => errors.push(RuleError {
                path: path.to_string(),
                rule: source.to_string(),
                detail,
            }),
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
