//! Kubernetes' CEL libraries in CRD `x-kubernetes-validations`, end to end over HTTP: a CRD
//! whose rules use the IP/CIDR (or quantity, URL, format) libraries registers, objects that
//! satisfy them are stored, objects that break them (or make a function fail) get 422 with one
//! cause per rule (worded by `message`/`messageExpression`, placed by `fieldPath`, typed by
//! `reason`), and a CRD whose rule calls a function the stand-in does not provide is refused,
//! naming the rule.

mod common;

use common::raw;
use ironlb_apiserver::Config;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const SUBNETS: &str = "/apis/example.com/v1/namespaces/default/subnets";

async fn post(handle: &ironlb_apiserver::ServerHandle, path: &str, body: Value) -> common::Raw {
    raw(handle, "POST", path, &[JSON], body.to_string().as_bytes()).await
}

fn subnet_crd(spec_rule: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "subnets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "subnets", "singular": "subnet", "kind": "Subnet", "listKind": "SubnetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [{"rule": spec_rule, "message": "gw must be an address inside cidr"}],
                        "properties": {
                            "cidr": {"type": "string", "x-kubernetes-validations": [
                                {"rule": "!isCIDR(self) || cidr(self).prefixLength() >= 16", "message": "prefix too short"}]},
                            "gw": {"type": "string"},
                            "dns": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [
                                {"rule": "self.all(a, isIP(a) && !ip(a).isLoopback())", "message": "dns servers must be non-loopback addresses"}]}}}}}}}]}
    })
}

fn subnet(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Subnet", "metadata": {"name": name}, "spec": spec})
}

/// The (field, message) of each cause of a 422.
fn causes(response: &common::Raw) -> Vec<(String, String)> {
    response.json()["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ip_and_cidr_rules_validate_custom_resources() {
    let handle = common::start_with(Config::default()).await;

    let refused = post(&handle, CRDS, subnet_crd("isSemver(self.gw)")).await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused.text().contains("isSemver(self.gw)")
            && refused.text().contains("unsupported function: isSemver"),
        "names the rule and the function: {}",
        refused.text()
    );

    let created = post(
        &handle,
        CRDS,
        subnet_crd("isCIDR(self.cidr) && cidr(self.cidr).containsIP(self.gw)"),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());

    let good = post(
        &handle,
        SUBNETS,
        subnet(
            "good",
            json!({"cidr": "192.168.0.0/24", "gw": "192.168.0.1", "dns": ["10.0.0.53", "2001:db8::53"]}),
        ),
    )
    .await;
    assert_eq!(good.status, 201, "{}", good.text());
    let good6 = post(
        &handle,
        SUBNETS,
        subnet(
            "good6",
            json!({"cidr": "2001:db8::/64", "gw": "2001:db8::1"}),
        ),
    )
    .await;
    assert_eq!(good6.status, 201, "{}", good6.text());

    // The gateway outside the CIDR: the rule on spec fails.
    let outside = post(
        &handle,
        SUBNETS,
        subnet(
            "outside",
            json!({"cidr": "192.168.0.0/24", "gw": "192.168.1.1"}),
        ),
    )
    .await;
    assert_eq!(outside.status, 422, "{}", outside.text());
    assert_eq!(
        causes(&outside),
        [(
            "spec".to_string(),
            "Invalid value: \"object\": gw must be an address inside cidr".to_string()
        )],
        "{}",
        outside.text()
    );
    assert!(
        outside.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("Subnet.example.com \"outside\" is invalid")
                && m.contains("gw must be an address inside cidr")),
        "{}",
        outside.text()
    );

    // Not a CIDR: isCIDR short-circuits the spec rule; the field rule passes too.
    let not_cidr = post(
        &handle,
        SUBNETS,
        subnet(
            "not-cidr",
            json!({"cidr": "192.168.0.0", "gw": "192.168.0.1"}),
        ),
    )
    .await;
    assert_eq!(not_cidr.status, 422, "{}", not_cidr.text());
    assert_eq!(causes(&not_cidr).len(), 1, "{}", not_cidr.text());

    // A gateway that is no address makes containsIP fail: a cause, never a crash.
    let bad_gw = post(
        &handle,
        SUBNETS,
        subnet("bad-gw", json!({"cidr": "10.1.0.0/16", "gw": "nope"})),
    )
    .await;
    assert_eq!(bad_gw.status, 422, "{}", bad_gw.text());
    let bad_gw_causes = causes(&bad_gw);
    assert_eq!(bad_gw_causes.len(), 1, "{}", bad_gw.text());
    assert_eq!(bad_gw_causes[0].0, "spec");
    assert!(
        bad_gw_causes[0]
            .1
            .contains("evaluating rule: gw must be an address inside cidr")
            && bad_gw_causes[0].1.contains("parse error"),
        "{}",
        bad_gw.text()
    );

    // Rules on fields below spec: each cause names its field.
    let several = post(
        &handle,
        SUBNETS,
        subnet(
            "several",
            json!({"cidr": "10.0.0.0/8", "gw": "10.0.0.1", "dns": ["127.0.0.1"]}),
        ),
    )
    .await;
    assert_eq!(several.status, 422, "{}", several.text());
    let mut fields: Vec<(String, String)> = causes(&several);
    fields.sort();
    assert_eq!(
        fields,
        [
            (
                "spec.cidr".to_string(),
                "Invalid value: \"string\": prefix too short".to_string()
            ),
            (
                "spec.dns".to_string(),
                "Invalid value: \"array\": dns servers must be non-loopback addresses".to_string()
            ),
        ],
        "{}",
        several.text()
    );

    // Nothing invalid was stored.
    let list = raw(&handle, "GET", SUBNETS, &[], b"").await.json();
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["good", "good6"]);
}

#[tokio::test]
async fn quantity_url_and_format_rules_with_message_expression_and_field_path() {
    let handle = common::start_with(Config::default()).await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "volumes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "volumes", "singular": "volume", "kind": "Volume", "listKind": "VolumeList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "!isQuantity(self.size) || quantity(self.size).compareTo(quantity('1Gi')) <= 0",
                             "messageExpression": "'size ' + self.size + ' is over 1Gi'",
                             "fieldPath": ".size", "reason": "FieldValueForbidden"},
                            {"rule": "isURL(self.source) && url(self.source).getScheme() == 'https'",
                             "message": "source must be an https URL", "fieldPath": ".source"},
                            {"rule": "!format.dns1123Label().validate(self.owner).hasValue()",
                             "messageExpression": "format.dns1123Label().validate(self.owner).value().join('; ')",
                             "fieldPath": ".owner"}],
                        "properties": {"size": {"type": "string"}, "source": {"type": "string"}, "owner": {"type": "string"}}}}}}}]}
    });
    let created = post(&handle, CRDS, crd).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let volumes = "/apis/example.com/v1/namespaces/default/volumes";
    let volume = |name: &str, size: &str, source: &str, owner: &str| {
        json!({"apiVersion": "example.com/v1", "kind": "Volume", "metadata": {"name": name},
            "spec": {"size": size, "source": source, "owner": owner}})
    };
    let good = post(
        &handle,
        volumes,
        volume("good", "512Mi", "https://example.com/disk?x=1", "team-a"),
    )
    .await;
    assert_eq!(good.status, 201, "{}", good.text());
    let bad = post(
        &handle,
        volumes,
        volume("bad", "2Gi", "http://example.com/", "Team_A"),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    let mut got: Vec<Value> = bad.json()["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    got.sort_by_key(|c| c["field"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        got,
        [
            json!({"reason": "FieldValueInvalid", "field": "spec.owner",
                "message": "Invalid value: \"object\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"}),
            json!({"reason": "FieldValueForbidden", "field": "spec.size",
                "message": "Forbidden: size 2Gi is over 1Gi"}),
            json!({"reason": "FieldValueInvalid", "field": "spec.source",
                "message": "Invalid value: \"object\": source must be an https URL"}),
        ],
        "{}",
        bad.text()
    );
}
