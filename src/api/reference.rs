//! The field reference of the CRDs as Markdown (docs/reference/crd-fields.md), generated from the
//! same OpenAPI schemas the API server validates with, so that the documentation cannot drift
//! from the types (`backup-operator crd --docs`; a test compares it with the checked-in copy).

use serde_json::Value;

/// One row per field: path, type, default and limits, description.
fn rows(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    let required: Vec<&str> = schema.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for (name, field) in properties {
        let here = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        let mut kind = field.get("type").and_then(Value::as_str).unwrap_or("object").to_owned();
        let items = field.get("items");
        if kind == "array" {
            let of = items.and_then(|i| i.get("type")).and_then(Value::as_str).unwrap_or("object");
            kind = format!("[]{of}");
        }
        let mut notes = Vec::new();
        if required.contains(&name.as_str()) {
            notes.push("required".to_owned());
        }
        if let Some(d) = field.get("default") {
            notes.push(format!("default `{d}`"));
        }
        if let Some(e) = field.get("enum").and_then(Value::as_array) {
            notes.push(format!("one of {}", e.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")));
        }
        for (key, word) in [("minimum", "min"), ("maximum", "max"), ("maxLength", "max length"), ("maxItems", "max items")] {
            if let Some(v) = field.get(key) {
                // Limits come as JSON numbers, integers among them written as floats (1.0).
                let n = v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map_or_else(|| v.to_string(), |f| format!("{}", f as i64));
                notes.push(format!("{word} {n}"));
            }
        }
        let description = field.get("description").and_then(Value::as_str).unwrap_or("").replace('\n', " ").replace('|', "\\|");
        out.push(format!("| `{here}` | {kind} | {} | {description} |", notes.join("; ")));
        rows(field, &here, out);
        if let Some(items) = items {
            rows(items, &format!("{here}[]"), out);
        }
    }
}

/// The reference of one CRD (YAML as [`super::crd_yaml`] makes it).
fn of(crd_yaml: &str) -> Result<String, serde_yaml::Error> {
    let crd: Value = serde_yaml::from_str(crd_yaml)?;
    let kind = crd.pointer("/spec/names/kind").and_then(Value::as_str).unwrap_or_default();
    let mut text = String::new();
    for version in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
        let name = version.get("name").and_then(Value::as_str).unwrap_or_default();
        let schema = version.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null);
        text.push_str(&format!("## {kind} (`backup.example.com/{name}`)\n\n"));
        text.push_str("| field | type | required, default, limits | description |\n| --- | --- | --- | --- |\n");
        let mut out = Vec::new();
        for part in ["spec", "status"] {
            if let Some(s) = schema.pointer(&format!("/properties/{part}")) {
                rows(s, part, &mut out);
            }
        }
        text.push_str(&out.join("\n"));
        text.push_str("\n\n");
    }
    Ok(text)
}

/// docs/reference/crd-fields.md.
pub fn markdown() -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Field reference\n\nGenerated from the CRDs (`backup-operator crd --docs`); `kubectl explain backuppolicy.spec` shows the same descriptions.\n\n{}{}",
        of(&super::crd_yaml()?)?,
        of(&super::restore_crd_yaml()?)?.trim_end()
    ) + "\n")
}
