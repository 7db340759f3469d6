//! The checked-in CRDs and their field reference must be what the Rust types generate (`make crd`
//! regenerates them).

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn checked_in_crds_match_the_types() {
    let crds = [
        (backup_operator::api::crd_yaml().expect("generate CRD"), "backup.example.com_backuppolicies.yaml"),
        (backup_operator::api::restore_crd_yaml().expect("generate CRD"), "backup.example.com_backuprestores.yaml"),
    ];
    for (generated, file) in crds {
        let path = format!("{}/config/crd/{file}", env!("CARGO_MANIFEST_DIR"));
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(generated == checked_in, "config/crd/{file} is stale: run `make crd` and commit the result");
    }
}

#[test]
fn the_field_reference_is_generated_from_the_crds() {
    let generated = backup_operator::api::reference::markdown().expect("generate the reference");
    let path = format!("{}/docs/reference/crd-fields.md", env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(generated == checked_in, "docs/reference/crd-fields.md is stale: run `make crd` and commit the result");
    assert!(generated.contains("| `spec.retentionCount` | integer |"), "{generated}");
}
