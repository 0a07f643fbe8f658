//! The TracingLab field reference in Markdown (`docs/reference.md`), generated from the CRD's
//! OpenAPI schema so that it says exactly what the API server is given: types, defaults, limits.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tracing_lab_config::Role;

/// Stands for each service name where the four services share one schema.
const SERVICE: &str = "<service>";

/// The reference of every field of every version of `crd`.
pub fn markdown(crd: &CustomResourceDefinition) -> String {
    let names = &crd.spec.names;
    let mut out = format!(
        "# {kind} reference\n\n\
         Generated from the CRD's OpenAPI schema by \
         `tracing-lab-operator reference > docs/reference.md`; change the doc comments of the types \
         behind `operator/src/crd.rs` and regenerate rather than editing this file.\n",
        kind = names.kind
    );
    let short_names = names.short_names.iter().flatten();
    let short_names: Vec<String> = short_names.map(|n| format!("`{n}`")).collect();
    for version in &crd.spec.versions {
        let _ = write!(
            out,
            "\n## `{}/{}`\n\nKind `{}`, {} (`kubectl get {}`{}).",
            crd.spec.group,
            version.name,
            names.kind,
            crd.spec.scope.to_lowercase(),
            names.plural,
            if short_names.is_empty() {
                String::new()
            } else {
                format!(", short name {}", short_names.join(", "))
            }
        );
        let root = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        if let Some(text) = root.and_then(|r| r.description.as_deref()) {
            let _ = write!(out, " {}", first_paragraph(text));
        }
        out.push('\n');
        printer_columns(version, &mut out);
        for (name, section) in root
            .and_then(|r| r.properties.as_ref())
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "\n### {name}\n");
            if let Some(text) = section.description.as_deref() {
                let _ = writeln!(out, "{}\n", first_paragraph(text));
            }
            let mut rows = Vec::new();
            fields(name, section, &mut rows);
            out.push_str("| Field | Type | Default | Limits | Description |\n");
            out.push_str("|---|---|---|---|---|\n");
            for row in rows {
                let _ = writeln!(out, "| {} |", row.map(|text| cell(&text)).join(" | "));
            }
        }
    }
    images(&mut out);
    out.push('\n');
    out.push_str(&tracing_lab_config::targets_markdown());
    out
}

/// The default images, with what the tests run for each.
fn images(out: &mut String) {
    out.push_str(
        "\n## Default images\n\nEach component's `image` field overrides its default. The test \
         suite runs each component as a local program, at the version the last column names.\n\n\
         | Component | Default image | Tested with |\n|---|---|---|\n",
    );
    for image in crate::render::DEFAULT_IMAGES {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            image.component,
            image.image,
            cell(image.tested_with)
        );
    }
}

/// The columns `kubectl get` shows.
fn printer_columns(version: &CustomResourceDefinitionVersion, out: &mut String) {
    let columns = version.additional_printer_columns.iter().flatten();
    let mut columns = columns.peekable();
    if columns.peek().is_none() {
        return;
    }
    out.push_str("\n### Printer columns\n\n");
    out.push_str("| Column | Type | JSON path | Description |\n|---|---|---|---|\n");
    for c in columns {
        let row = [
            c.name.clone(),
            c.type_.clone(),
            format!("`{}`", c.json_path),
            c.description
                .as_deref()
                .map(first_paragraph)
                .unwrap_or_default(),
        ];
        let _ = writeln!(out, "| {} |", row.map(|text| cell(&text)).join(" | "));
    }
}

/// One table row: path, type, default, limits, description.
type Row = [String; 5];

/// Rows of every field below `schema` (whose own path is `path`), depth first.
fn fields(path: &str, schema: &JSONSchemaProps, rows: &mut Vec<Row>) {
    if let Some(properties) = &schema.properties {
        if let Some((shared, description)) = shared_service_schema(properties) {
            field(
                &format!("{path}.{SERVICE}"),
                &shared,
                false,
                description,
                rows,
            );
        } else {
            let required = schema.required.as_deref().unwrap_or_default();
            for (name, child) in properties {
                let path = format!("{path}.{name}");
                field(&path, child, required.contains(name), describe(child), rows);
            }
        }
    }
    // Structural schemas (required for CRDs) have one schema for all items, never a tuple.
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
        field(&format!("{path}[]"), item, false, describe(item), rows);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &schema.additional_properties {
        field(
            &format!("{path}{{name}}"),
            value,
            false,
            describe(value),
            rows,
        );
    }
}

/// The row of one field, then the rows below it.
fn field(
    path: &str,
    schema: &JSONSchemaProps,
    required: bool,
    description: String,
    rows: &mut Vec<Row>,
) {
    let default = schema.default.as_ref().map(|d| format!("`{}`", d.0));
    rows.push([
        format!("`{path}`"),
        type_of(schema, required),
        default.unwrap_or_default(),
        limits(schema),
        description,
    ]);
    // Container resources are the standard Kubernetes type; its schema would only repeat the
    // Kubernetes documentation.
    if !is_resource_requirements(schema) {
        fields(path, schema, rows);
    }
}

fn is_resource_requirements(schema: &JSONSchemaProps) -> bool {
    schema.properties.as_ref().is_some_and(|p| {
        ["claims", "limits", "requests"]
            .iter()
            .all(|k| p.contains_key(*k))
    })
}

/// When `properties` are exactly the four services and their schemas are the same apart from
/// their descriptions: that schema, and a description covering the four.
fn shared_service_schema(
    properties: &BTreeMap<String, JSONSchemaProps>,
) -> Option<(JSONSchemaProps, String)> {
    if properties.len() != Role::ALL.len() {
        return None;
    }
    let schemas = Role::ALL
        .iter()
        .map(|role| properties.get(role.name()).map(|s| (role.name(), s)))
        .collect::<Option<Vec<_>>>()?;
    let without_description = |s: &JSONSchemaProps| JSONSchemaProps {
        description: None,
        ..s.clone()
    };
    let shared = without_description(schemas[0].1);
    if schemas
        .iter()
        .any(|(_, s)| without_description(s) != shared)
    {
        return None;
    }
    let common = describe(schemas[0].1);
    let names: Vec<String> = schemas.iter().map(|(n, _)| format!("`{n}`")).collect();
    let text = if schemas.iter().all(|(_, s)| describe(s) == common) {
        format!("{common} `{SERVICE}` is one of {}.", names.join(", "))
    } else {
        let each = schemas.iter().zip(&names);
        let each = each.map(|((_, s), n)| format!("{n}: {}", describe(s)));
        each.collect::<Vec<_>>().join(" ")
    };
    Some((shared, text.trim().to_string()))
}

fn type_of(schema: &JSONSchemaProps, required: bool) -> String {
    let mut text = if is_resource_requirements(schema) {
        "Kubernetes `ResourceRequirements`".to_string()
    } else if schema.x_kubernetes_int_or_string == Some(true) {
        "integer or string".to_string()
    } else {
        match (schema.type_.as_deref(), &schema.additional_properties) {
            (Some("object"), Some(JSONSchemaPropsOrBool::Schema(_))) => "map".to_string(),
            (Some(t), _) => t.to_string(),
            (None, _) => "any".to_string(),
        }
    };
    if let Some(format) = &schema.format {
        let _ = write!(text, " ({format})");
    }
    if let Some(values) = &schema.enum_ {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", enum_value(&v.0)))
            .collect();
        let _ = write!(text, ": {}", values.join(", "));
    }
    if required {
        text.push_str(", required");
    }
    text
}

/// Enum values as the user writes them: strings without their JSON quotes.
fn enum_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn limits(schema: &JSONSchemaProps) -> String {
    let bound = |word: &str, value: f64, exclusive: Option<bool>| {
        let exclusive = if exclusive == Some(true) {
            " (exclusive)"
        } else {
            ""
        };
        format!("{word} {value}{exclusive}")
    };
    let mut parts = Vec::new();
    if let Some(v) = schema.minimum {
        parts.push(bound("min", v, schema.exclusive_minimum));
    }
    if let Some(v) = schema.maximum {
        parts.push(bound("max", v, schema.exclusive_maximum));
    }
    if let Some(v) = schema.multiple_of {
        parts.push(format!("multiple of {v}"));
    }
    let counts = [
        ("min length", schema.min_length),
        ("max length", schema.max_length),
        ("min items", schema.min_items),
        ("max items", schema.max_items),
        ("min entries", schema.min_properties),
        ("max entries", schema.max_properties),
    ];
    for (word, value) in counts {
        if let Some(v) = value {
            parts.push(format!("{word} {v}"));
        }
    }
    if schema.unique_items == Some(true) {
        parts.push("unique items".to_string());
    }
    if let Some(pattern) = &schema.pattern {
        parts.push(format!("pattern `{pattern}`"));
    }
    if let Some(list_type) = &schema.x_kubernetes_list_type {
        let keys = schema.x_kubernetes_list_map_keys.iter().flatten();
        let keys: Vec<String> = keys.map(|k| format!("`{k}`")).collect();
        if keys.is_empty() {
            parts.push(format!("list type `{list_type}`"));
        } else {
            parts.push(format!(
                "list type `{list_type}` keyed by {}",
                keys.join(", ")
            ));
        }
    }
    // What a rule refuses reads better as its message than as CEL.
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        parts.push(match &rule.message {
            Some(message) => format!("refused at apply: {message}"),
            None => format!("rule `{}`", rule.rule),
        });
    }
    parts.join(", ")
}

/// The first paragraph of the schema's description on one line.
fn describe(schema: &JSONSchemaProps) -> String {
    schema
        .description
        .as_deref()
        .map(first_paragraph)
        .unwrap_or_default()
}

/// The first paragraph of a description on one line.
fn first_paragraph(text: &str) -> String {
    let lines = text.lines().skip_while(|l| l.trim().is_empty());
    let lines: Vec<&str> = lines.take_while(|l| !l.trim().is_empty()).collect();
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A table cell: `|` would end the cell, a newline the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TracingLab;
    use kube::CustomResourceExt;

    #[test]
    fn readme_names_every_default_image() {
        let readme = include_str!("../../README.md");
        for image in crate::render::DEFAULT_IMAGES {
            assert!(
                readme.contains(image.image),
                "README.md lacks {}",
                image.image
            );
        }
    }

    #[test]
    fn checked_in_reference_matches_the_crd() {
        let checked_in = include_str!("../../docs/reference.md");
        assert!(
            checked_in == markdown(&TracingLab::crd()),
            "docs/reference.md is stale: run `cargo run -p tracing-lab-operator -- reference > docs/reference.md`"
        );
    }

    fn services_schema(crd: &mut CustomResourceDefinition) -> &mut JSONSchemaProps {
        let root = crd.spec.versions[0].schema.as_mut().unwrap();
        let spec = root.open_api_v3_schema.as_mut().unwrap();
        let spec = spec.properties.as_mut().unwrap().get_mut("spec").unwrap();
        spec.properties
            .as_mut()
            .unwrap()
            .get_mut("services")
            .unwrap()
    }

    #[test]
    fn the_four_services_are_documented_once_while_their_schemas_agree() {
        let doc = markdown(&TracingLab::crd());
        assert!(doc.contains("| `spec.services.<service>.workload.intensities[]` |"));
        assert!(!doc.contains("`spec.services.api"));

        let mut crd = TracingLab::crd();
        let services = services_schema(&mut crd).properties.as_mut().unwrap();
        let analytics = services.get_mut("analytics").unwrap();
        analytics.properties.as_mut().unwrap().remove("faults");
        let doc = markdown(&crd);
        assert!(!doc.contains("`spec.services.<service>"));
        assert!(doc.contains("| `spec.services.api.faults.errorRate` |"));
        assert!(!doc.contains("`spec.services.analytics.faults"));
    }

    #[test]
    fn container_resources_are_one_row() {
        let doc = markdown(&TracingLab::crd());
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `spec.kafka.resources` |"))
            .unwrap();
        assert!(row.contains("Kubernetes `ResourceRequirements`"), "{row}");
        assert!(!doc.contains("`spec.kafka.resources."));
    }

    #[test]
    fn descriptions_keep_their_first_paragraph_on_one_line() {
        assert_eq!(
            first_paragraph("\nOne\n  line.\n\nSecond paragraph."),
            "One line."
        );
        assert_eq!(cell("a | b"), "a \\| b");
    }
}
