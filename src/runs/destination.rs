//! Where a policy's backups go: its destinations as plain data, what a planner is told about
//! one, and which Secret keys the host puts into a destination's Jobs. Pure.

use crate::api::{BackupPolicySpec, S3Destination};
use crate::base::names::{ACCESS_KEY_ID_ENV, REPOSITORY_PASSWORD_ENV, SECRET_ACCESS_KEY_ENV};
use crate::strategy::bindings::types as wit;

/// The keys of an S3 destination's credentialsSecret (the names most S3 tools read).
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Where the host mounts an S3 destination's CA bundle.
pub const CA_DIR: &str = "/etc/backup-destination";
pub const CA_FILE_NAME: &str = "ca.crt";
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A PersistentVolumeClaim in the policy's namespace.
    Claim(String),
    S3(S3Destination),
}

/// One destination of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its name in spec.destinations; empty for a policy without them, whose one destination is
    /// spec.backupStorageClaim (its runs keep the names they had before destinations existed).
    pub name: String,
    pub kind: Kind,
}

/// A Secret key the host puts into a destination's Jobs as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub env: &'static str,
    pub secret: String,
    pub key: String,
}

impl Destination {
    /// The claim this destination writes to, if it is one.
    pub fn claim(&self) -> Option<&str> {
        match &self.kind {
            Kind::Claim(claim) => Some(claim),
            Kind::S3(_) => None,
        }
    }

    /// How messages name it: `destination "offsite"`, or the claim for the implicit one.
    pub fn describe(&self) -> String {
        match (&self.kind, self.name.is_empty()) {
            (Kind::Claim(claim), true) => format!("PersistentVolumeClaim {claim:?} (spec.backupStorageClaim)"),
            (Kind::Claim(claim), false) => format!("destination {:?} (PersistentVolumeClaim {claim:?})", self.name),
            (Kind::S3(s3), _) => format!("destination {:?} (s3 bucket {:?} at {})", self.name, s3.bucket, s3.endpoint),
        }
    }
}

/// The policy's destinations, in spec order. Entries with neither or both kinds cannot pass the
/// CRD's validation; they are left out here.
pub fn of(spec: &BackupPolicySpec) -> Vec<Destination> {
    match &spec.destinations {
        None => vec![Destination { name: String::new(), kind: Kind::Claim(spec.backup_storage_claim.clone()) }],
        Some(list) => list
            .iter()
            .filter_map(|d| {
                let kind = match (&d.claim, &d.s3) {
                    (Some(claim), None) => Kind::Claim(claim.name.clone()),
                    (None, Some(s3)) => Kind::S3(s3.clone()),
                    (Some(_), Some(_)) | (None, None) => return None,
                };
                Some(Destination { name: d.name.clone(), kind })
            })
            .collect(),
    }
}

/// Why an S3 prefix is refused (the schema refuses the same): an empty segment, `.` or `..`, or a
/// leading or trailing `/`, any of which could place a PVC's objects outside its own prefix.
pub fn prefix_problem(prefix: &str) -> Option<String> {
    prefix
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        .then(|| format!("S3 prefix {:?} may not contain empty, \".\" or \"..\" segments, or start or end with \"/\"", prefix.chars().take(80).collect::<String>()))
}

/// The destination of that name (a run's label), if the policy still has it.
pub fn find(spec: &BackupPolicySpec, name: &str) -> Option<Destination> {
    of(spec).into_iter().find(|d| d.name == name)
}

/// The Secret keys a Job of this destination gets as environment variables.
pub fn secret_env(spec: &BackupPolicySpec, destination: &Destination) -> Vec<SecretEnv> {
    let mut env = Vec::new();
    if let Kind::S3(s3) = &destination.kind {
        env.push(SecretEnv { env: ACCESS_KEY_ID_ENV, secret: s3.credentials_secret.clone(), key: ACCESS_KEY_ID_KEY.into() });
        env.push(SecretEnv { env: SECRET_ACCESS_KEY_ENV, secret: s3.credentials_secret.clone(), key: SECRET_ACCESS_KEY_KEY.into() });
    }
    if let Some(restic) = &spec.restic {
        env.push(SecretEnv { env: REPOSITORY_PASSWORD_ENV, secret: restic.password_secret.name.clone(), key: restic.password_secret.key.clone() });
    }
    env
}

/// The Secret key mounted as the destination's CA bundle, if it has one: (secret, key).
pub fn ca_bundle(destination: &Destination) -> Option<(String, String)> {
    match &destination.kind {
        Kind::S3(s3) => s3.ca_bundle_key.clone().map(|key| (s3.credentials_secret.clone(), key)),
        Kind::Claim(_) => None,
    }
}

/// What the host gives every Job of one destination (backup, restore, prune, verify).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    /// The destination's name ("" for the unnamed one): a label on the Job.
    pub destination: String,
    /// The claim mounted as `backup` (empty for object storage, where no plan may mount it).
    pub storage_claim: String,
    pub env: Vec<SecretEnv>,
    /// (secret, key) mounted as [`CA_DIR`]/[`CA_FILE_NAME`].
    pub ca_bundle: Option<(String, String)>,
}

pub fn access(spec: &BackupPolicySpec, destination: &Destination) -> Access {
    Access {
        destination: destination.name.clone(),
        storage_claim: destination.claim().unwrap_or_default().to_owned(),
        env: secret_env(spec, destination),
        ca_bundle: ca_bundle(destination),
    }
}

/// Every Secret key this destination's Jobs need, with what it is for: the operator checks them
/// before creating a Job, so that a missing one is a condition rather than a pod that cannot start.
pub fn required_keys(spec: &BackupPolicySpec, destination: &Destination) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = secret_env(spec, destination).into_iter().map(|e| (e.secret, e.key)).collect();
    keys.extend(ca_bundle(destination));
    keys
}

/// What a planner is told about a destination, for one PVC: an S3 prefix is narrowed to that
/// PVC's own (`[<prefix>/]<namespace>/<policy>/<pvc>`), as a claim is to its directory.
pub fn for_plan(destination: &Destination, namespace: &str, policy: &str, pvc: &str) -> wit::Destination {
    let kind = match &destination.kind {
        Kind::Claim(claim) => wit::DestinationKind::Claim(claim.clone()),
        Kind::S3(s3) => {
            let own = crate::base::names::storage_dir(namespace, policy, pvc);
            let prefix = match s3.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
                Some(p) => format!("{p}/{own}"),
                None => own,
            };
            wit::DestinationKind::S3(wit::S3Destination {
                endpoint: s3.endpoint.trim_end_matches('/').to_owned(),
                bucket: s3.bucket.clone(),
                prefix,
                region: s3.region.clone().unwrap_or_else(|| DEFAULT_REGION.into()),
                access_key_id_env: ACCESS_KEY_ID_ENV.into(),
                secret_access_key_env: SECRET_ACCESS_KEY_ENV.into(),
                ca_file: s3.ca_bundle_key.as_ref().map(|_| format!("{CA_DIR}/{CA_FILE_NAME}")),
            })
        }
    };
    wit::Destination { name: destination.name.clone(), kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> BackupPolicySpec {
        let mut base = serde_json::json!({"schedule": "@daily", "pvcSelector": {}});
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("spec")
    }

    #[test]
    fn without_destinations_the_storage_claim_is_the_one_unnamed_destination() {
        let d = of(&spec(serde_json::json!({"backupStorageClaim": "store"})));
        assert_eq!(d, vec![Destination { name: String::new(), kind: Kind::Claim("store".into()) }]);
        assert!(secret_env(&spec(serde_json::json!({})), &d[0]).is_empty());
    }

    #[test]
    fn s3_destinations_get_credentials_a_narrowed_prefix_and_the_password() {
        let s = spec(serde_json::json!({
            "destinations": [
                {"name": "local", "claim": {"name": "store"}},
                {"name": "offsite", "s3": {"endpoint": "http://s3:9000/", "bucket": "b", "prefix": "team/", "credentialsSecret": "creds", "caBundleKey": "ca.pem"}},
            ],
            "restic": {"passwordSecret": {"name": "pw", "key": "password"}},
        }));
        let d = of(&s);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].claim(), Some("store"));
        let env = secret_env(&s, &d[1]);
        let env: Vec<(&str, &str, &str)> = env.iter().map(|e| (e.env, e.secret.as_str(), e.key.as_str())).collect();
        assert_eq!(env, vec![(ACCESS_KEY_ID_ENV, "creds", ACCESS_KEY_ID_KEY), (SECRET_ACCESS_KEY_ENV, "creds", SECRET_ACCESS_KEY_KEY), (REPOSITORY_PASSWORD_ENV, "pw", "password")]);
        assert_eq!(required_keys(&s, &d[0]), vec![("pw".to_owned(), "password".to_owned())], "a claim needs only the password");
        assert_eq!(required_keys(&s, &d[1]).len(), 4, "credentials, password and CA bundle");
        let planned = for_plan(&d[1], "ns", "pol", "data-0");
        let wit::DestinationKind::S3(s3) = planned.kind else { panic!("s3") };
        assert_eq!((s3.endpoint.as_str(), s3.prefix.as_str(), s3.region.as_str()), ("http://s3:9000", "team/ns/pol/data-0", DEFAULT_REGION));
        assert_eq!(s3.ca_file.as_deref(), Some("/etc/backup-destination/ca.crt"));
        assert_eq!(find(&s, "offsite").map(|d| d.name), Some("offsite".to_owned()));
        assert_eq!(find(&s, "gone"), None);
    }
}
