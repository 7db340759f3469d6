//! The checked-in CRD must be what the Rust types generate (`make crd` regenerates it).

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = backup_operator::api::crd_yaml().expect("generate CRD");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/crd/backup.example.com_backuppolicies.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(generated == checked_in, "config/crd/ is stale: run `make crd` and commit the result");
}
