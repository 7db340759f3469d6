//! The operator's custom resources (`backup.example.com/v1alpha1`): [`policy`] (BackupPolicy)
//! and [`restore`] (BackupRestore), and their CRD YAML, generated from these types.


pub mod policy;
pub mod reference;
pub mod restore;
pub use policy::*;
pub use restore::{BackupRestore, BackupRestoreSpec, BackupRestoreStatus, RestorePhase};

/// The BackupPolicy CRD as YAML, generated from these types (`backup-operator crd`).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    crd_yaml_of::<BackupPolicy>()
}

/// The BackupRestore CRD as YAML (`backup-operator crd --kind backuprestore`).
pub fn restore_crd_yaml() -> Result<String, serde_yaml::Error> {
    crd_yaml_of::<BackupRestore>()
}

fn crd_yaml_of<K: kube::CustomResourceExt>() -> Result<String, serde_yaml::Error> {
    let mut crd = serde_json::to_value(K::crd()).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
    if let Some(versions) = crd.pointer_mut("/spec/versions").and_then(|v| v.as_array_mut()) {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                complete_schema(schema, "");
            }
        }
    }
    serde_yaml::to_string(&crd)
}

/// The RFC 3339 times the operator reads: the API server's `date-time` format alone admits
/// offsets such as `+05:99`, a lowercase `t` or `z`, and fractions of any length, which the
/// operator's parser (jiff, through k8s-openapi's `Time`) refuses or the API server later refuses
/// to store again, and years past 9998 (the parser's range ends within 9999). Every `date-time`
/// field of the CRDs carries this pattern too, so that what the API server admits, the operator
/// reads (table-tested below).
pub const RFC3339_PATTERN: &str =
    r"^([0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// Fills in what Kubernetes' own types leave out of the schema (the label selector's value items,
/// a condition's `observedGeneration`): every field described, every integer bounded to what JSON
/// numbers hold exactly, every time as strict as the operator's parser.
fn complete_schema(node: &mut serde_json::Value, field: &str) {
    let Some(object) = node.as_object_mut() else { return };
    if object.get("format").and_then(|f| f.as_str()) == Some("date-time") && !object.contains_key("pattern") {
        object.insert("pattern".into(), serde_json::json!(RFC3339_PATTERN));
    }
    if object.get("type").and_then(|t| t.as_str()) == Some("integer") && !object.contains_key("maximum") {
        let max = if object.get("format").and_then(|f| f.as_str()) == Some("int32") { 2_147_483_647.0 } else { 9_007_199_254_740_991.0 };
        object.insert("maximum".into(), serde_json::json!(max));
    }
    if !object.contains_key("description") && !field.is_empty() {
        object.insert("description".into(), serde_json::json!(format!("The {field} (see docs/concepts.md).")));
    }
    if let Some(properties) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for (name, child) in properties.iter_mut() {
            complete_schema(child, name);
        }
    }
    if let Some(items) = object.get_mut("items") {
        let described = field.to_owned();
        if let Some(items) = items.as_object_mut()
            && !items.contains_key("description")
        {
            items.insert("description".into(), serde_json::json!(format!("One {described} entry.")));
        }
        complete_schema(items, "");
    }
}

pub use crate::base::time::{from_time, to_time};

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn admitted(s: &str) -> bool {
        regex::Regex::new(RFC3339_PATTERN).expect("pattern").is_match(s)
    }

    fn read(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        serde_json::from_value::<Time>(serde_json::json!(s)).ok().as_ref().and_then(from_time)
    }

    #[test]
    fn the_schema_admits_only_times_the_operator_reads() {
        // (time, admitted by the CRD's pattern)
        let table = [
            ("2026-12-07T17:00:00Z", true),
            ("2026-12-07T17:00:00.5Z", true),
            ("2026-12-07T17:00:00.123456789Z", true),
            ("2026-12-07T17:00:00+05:30", true),
            ("2026-12-07T17:00:00-23:59", true),
            ("2026-12-07T23:59:59+00:00", true),
            ("2026-12-07T17:00:00+05:99", false),
            ("2026-12-07T17:00:00+24:00", false),
            ("2026-12-07t17:00:00Z", false),
            ("2026-12-07T17:00:00z", false),
            ("2026-12-07T17:00:00x.5Z", false),
            ("2026-12-07T17:00:00.1234567890Z", false),
            ("2026-12-07T17:00:00.Z", false),
            ("2026-12-07 17:00:00Z", false),
            ("2026-12-07T17:00:00", false),
            ("2026-12-07T24:00:00Z", false),
            ("2026-12-07T17:60:00Z", false),
            ("2026-12-07T17:00:60Z", false),
            ("2026-13-07T17:00:00Z", false),
            ("2026-12-32T17:00:00Z", false),
            ("2026-12-07T17:00:00+0530", false),
            ("+2026-12-07T17:00:00Z", false),
            ("9999-12-31T00:00:00Z", false),
            ("9998-12-31T23:59:59Z", true),
            ("0000-01-01T00:00:00Z", true),
            ("2026-12-07T17:00Z", false),
        ];
        for (time, want) in table {
            assert_eq!(admitted(time), want, "{time}");
            if want {
                assert!(read(time).is_some(), "admitted but unreadable: {time}");
            }
        }
    }

    #[test]
    fn every_time_the_pattern_admits_parses_over_a_sweep_of_odd_forms() {
        let mut admitted_count = 0;
        for date in ["2026-12-07", "2024-02-29", "0001-01-01", "9999-12-31", "2026-02-28"] {
            for sep in ["T", "t", " "] {
                for clock in ["00:00:00", "23:59:59", "12:30:45"] {
                    for fraction in ["", ".", ".0", ".12", ".123456", ".123456789", ".1234567891"] {
                        for offset in ["Z", "z", "+00:00", "-00:00", "+23:59", "-12:45", "+05:99", "+24:00", "+99:00", "+0530", ""] {
                            let time = format!("{date}{sep}{clock}{fraction}{offset}");
                            if admitted(&time) {
                                admitted_count += 1;
                                assert!(read(&time).is_some(), "admitted but unreadable: {time}");
                            }
                        }
                    }
                }
            }
        }
        assert!(admitted_count > 100, "{admitted_count}");
    }

    #[test]
    fn an_s3_prefix_cannot_climb_out_of_its_place() {
        let yaml = crd_yaml().expect("crd");
        let line = yaml.lines().find(|l| l.trim_start().starts_with("pattern: ^([A-Za-z0-9!_*'()-]")).expect("the prefix pattern");
        let pattern = line.trim_start().trim_start_matches("pattern: ").trim_matches('\'');
        let re = regex::Regex::new(pattern).expect("pattern");
        for ok in ["team", "team/backups", "a.b/c_d", ".hidden/x", "...", "x/..y", "v1.2"] {
            assert!(re.is_match(ok), "{ok}");
            assert_eq!(crate::runs::destination::prefix_problem(ok), None, "{ok}");
        }
        for bad in ["..", "../other", "a/../b", "a/..", ".", "./a", "a/./b", "/a", "a/", "a//b", ""] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(crate::runs::destination::prefix_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn every_date_time_field_of_both_crds_carries_the_pattern() {
        for yaml in [crd_yaml().expect("crd"), restore_crd_yaml().expect("crd")] {
            let times = yaml.matches("format: date-time").count();
            let patterns = yaml.matches("pattern: ^([0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-").count();
            assert!(times > 0 && times == patterns, "{times} date-time fields, {patterns} with the pattern");
        }
    }
}
