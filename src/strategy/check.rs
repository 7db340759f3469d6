//! The host's check of every plan before anything reaches the cluster. Pure: a plan and the
//! operator's policy in, the first violation out.

use super::bindings::types::{Destination, DestinationKind, EnvSource, JobPlan, Plan, SnapshotPlan};

/// The logical volumes a Job plan may mount.
pub const LOGICAL_VOLUMES: [&str; 3] = ["data", "backup", "scratch"];

/// What the operator allows plans to do.
#[derive(Debug, Clone)]
pub struct PlanPolicy {
    /// Env vars may reference Secrets.
    pub allow_secret_env: bool,
    /// Images plans may use, matched on registry and repository (`busybox`,
    /// `registry.example.com/backup/`); empty allows every valid reference.
    pub image_allowlist: Vec<super::image::AllowedImage>,
    /// Bytes of command plus args.
    pub max_command_bytes: usize,
    /// Bytes of every string in the plan together.
    pub max_plan_bytes: usize,
    /// Items, counted, since a byte limit lets through a million empty ones.
    pub max_env: usize,
    pub max_args: usize,
    pub max_mounts: usize,
    pub max_labels: usize,
    /// Largest CPU and memory request a plan may make (a Job that can never be scheduled would
    /// only block its PVC's next runs).
    pub max_cpu_millicores: u32,
    pub max_memory_bytes: u64,
}

impl Default for PlanPolicy {
    fn default() -> Self {
        PlanPolicy {
            allow_secret_env: false,
            image_allowlist: Vec::new(),
            max_command_bytes: 16 * 1024,
            max_plan_bytes: 64 * 1024,
            max_env: 128,
            max_args: 256,
            max_mounts: 8,
            max_labels: 32,
            max_cpu_millicores: 64_000,
            max_memory_bytes: 256 << 30,
        }
    }
}

/// A mount path as the kubelet will see it: `//`, `/.` and a trailing `/` removed. `..` is kept,
/// to be refused.
pub fn normalize_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let joined = format!("/{}", parts.join("/"));
    if path.starts_with('/') { joined } else { joined[1..].to_owned() }
}

/// What a plan is for: the data volume must stay read-only except when restoring into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanPurpose {
    Backup,
    Restore,
    Prune,
    Verify,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanViolation {
    #[error("privileged containers are not allowed")]
    Privileged,
    #[error("added capabilities are not allowed: {0:?}")]
    AddedCapabilities(Vec<String>),
    #[error("the host {0} namespace is not allowed")]
    HostNamespace(&'static str),
    #[error("mounting a service account token is not allowed")]
    ServiceAccountToken,
    #[error("hostPath volumes are not allowed: {0:?}")]
    HostPath(String),
    #[error("env {0:?} takes its value from a Secret, which the operator does not allow")]
    SecretEnv(String),
    #[error("volume {0:?} is not one of the logical volumes data, backup, scratch")]
    UnknownVolume(String),
    #[error("the data volume must be mounted read-only to back up, prune or verify")]
    DataWritable,
    #[error("mount path {0:?} must be absolute, without '..', and used once")]
    BadMountPath(String),
    #[error("image {0:?} is not in the operator's image allowlist")]
    ImageNotAllowed(String),
    #[error("the plan has no {0}")]
    Missing(&'static str),
    #[error("command and args are {size} bytes, over the {max}-byte limit")]
    CommandTooLarge { size: usize, max: usize },
    #[error("the plan is {size} bytes, over the {max}-byte limit")]
    PlanTooLarge { size: usize, max: usize },
    #[error("env name {0:?} is not a valid environment variable name")]
    BadEnvName(String),
    #[error("artifact location {0:?} must be a relative path inside the run's own backup directory, without '..'")]
    BadArtifactLocation(String),
    #[error("{what} {value:?} is not a valid Kubernetes {kind}")]
    BadName { what: &'static str, value: String, kind: &'static str },
    #[error("the plan has {count} {what}, over the limit of {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("env {0:?} is set twice")]
    DuplicateEnv(String),
    #[error("resources: {0}")]
    BadResources(String),
    #[error("a volume-snapshot plan cannot {0}")]
    SnapshotCannot(&'static str),
    #[error("destination {0:?} is object storage: there is no backup volume to mount")]
    NoBackupVolume(String),
    #[error("env {0:?} is set by the host (destination credentials or repository password)")]
    ReservedEnv(String),
}

/// Environment variables only the host sets: a plan may not shadow them.
pub const RESERVED_ENV: [&str; 3] = [
    crate::base::names::ACCESS_KEY_ID_ENV,
    crate::base::names::SECRET_ACCESS_KEY_ENV,
    crate::base::names::REPOSITORY_PASSWORD_ENV,
];

/// Checks a plan against the destination it was made for: no `backup` volume without a claim,
/// and none of the variables the host sets for credentials.
pub fn check_destination(plan: &Plan, destination: &Destination) -> Result<(), PlanViolation> {
    let Plan::Job(job) = plan else { return Ok(()) };
    if let DestinationKind::S3(_) = destination.kind
        && job.mounts.iter().any(|m| m.volume == "backup")
    {
        return Err(PlanViolation::NoBackupVolume(destination.name.clone()));
    }
    if let Some(env) = job.env.iter().find(|e| RESERVED_ENV.contains(&e.name.as_str())) {
        return Err(PlanViolation::ReservedEnv(env.name.clone()));
    }
    Ok(())
}

/// Checks `plan` against `policy`; the first violation found is returned.
pub fn check_plan(plan: &Plan, purpose: PlanPurpose, policy: &PlanPolicy) -> Result<(), PlanViolation> {
    let size = plan_size(plan);
    if size > policy.max_plan_bytes {
        return Err(PlanViolation::PlanTooLarge { size, max: policy.max_plan_bytes });
    }
    match plan {
        Plan::Job(job) => check_job(job, purpose, policy),
        Plan::VolumeSnapshot(snapshot) => match purpose {
            PlanPurpose::Backup => check_snapshot(snapshot),
            PlanPurpose::Restore => Err(PlanViolation::SnapshotCannot("restore")),
            PlanPurpose::Prune => Err(PlanViolation::SnapshotCannot("prune")),
            PlanPurpose::Verify => Err(PlanViolation::SnapshotCannot("verify")),
        },
    }
}

fn check_counts(job: &JobPlan, policy: &PlanPolicy) -> Result<(), PlanViolation> {
    let args = job.command.len() + job.args.len();
    let counts = [
        ("env vars", job.env.len(), policy.max_env),
        ("command and args items", args, policy.max_args),
        ("mounts", job.mounts.len(), policy.max_mounts),
        ("added capabilities and host paths", job.privileges.add_capabilities.len() + job.privileges.host_paths.len(), policy.max_labels),
    ];
    for (what, count, max) in counts {
        if count > max {
            return Err(PlanViolation::TooMany { what, count, max });
        }
    }
    let mut names: Vec<&str> = job.env.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlanViolation::DuplicateEnv(w[0].to_owned()));
    }
    match job.resources.cpu_millicores {
        Some(0) => return Err(PlanViolation::BadResources("a CPU request of 0 millicores; leave it unset for the namespace default".into())),
        Some(cpu) if cpu > policy.max_cpu_millicores => {
            return Err(PlanViolation::BadResources(format!("{cpu} millicores of CPU, over the operator's maximum of {}", policy.max_cpu_millicores)));
        }
        _ => {}
    }
    match job.resources.memory_bytes {
        Some(0) => return Err(PlanViolation::BadResources("a memory request of 0 bytes; leave it unset for the namespace default".into())),
        Some(memory) if memory > policy.max_memory_bytes => {
            return Err(PlanViolation::BadResources(format!("{memory} bytes of memory, over the operator's maximum of {}", policy.max_memory_bytes)));
        }
        _ => {}
    }
    Ok(())
}

fn check_job(job: &JobPlan, purpose: PlanPurpose, policy: &PlanPolicy) -> Result<(), PlanViolation> {
    check_counts(job, policy)?;
    let p = &job.privileges;
    if p.privileged {
        return Err(PlanViolation::Privileged);
    }
    if !p.add_capabilities.is_empty() {
        return Err(PlanViolation::AddedCapabilities(p.add_capabilities.clone()));
    }
    for (requested, name) in [(p.host_network, "network"), (p.host_pid, "PID"), (p.host_ipc, "IPC")] {
        if requested {
            return Err(PlanViolation::HostNamespace(name));
        }
    }
    if p.automount_service_account_token {
        return Err(PlanViolation::ServiceAccountToken);
    }
    if let Some(path) = p.host_paths.first() {
        return Err(PlanViolation::HostPath(path.clone()));
    }
    if job.image.trim().is_empty() {
        return Err(PlanViolation::Missing("image"));
    }
    if !super::image::allowed(&policy.image_allowlist, &job.image) {
        return Err(PlanViolation::ImageNotAllowed(job.image.clone()));
    }
    if job.command.is_empty() {
        return Err(PlanViolation::Missing("command"));
    }
    let command_bytes: usize = job.command.iter().chain(&job.args).map(String::len).sum();
    if command_bytes > policy.max_command_bytes {
        return Err(PlanViolation::CommandTooLarge { size: command_bytes, max: policy.max_command_bytes });
    }
    for env in &job.env {
        if !is_env_name(&env.name) {
            return Err(PlanViolation::BadEnvName(env.name.clone()));
        }
        match &env.source {
            EnvSource::Value(_) => {}
            EnvSource::Secret(_) if policy.allow_secret_env => {}
            EnvSource::Secret(_) => return Err(PlanViolation::SecretEnv(env.name.clone())),
        }
    }
    let mut paths: Vec<String> = Vec::with_capacity(job.mounts.len());
    for mount in &job.mounts {
        if !LOGICAL_VOLUMES.contains(&mount.volume.as_str()) {
            return Err(PlanViolation::UnknownVolume(mount.volume.clone()));
        }
        if mount.volume == "data" && !mount.read_only && purpose != PlanPurpose::Restore {
            return Err(PlanViolation::DataWritable);
        }
        let path = normalize_path(&mount.path);
        if !mount.path.starts_with('/') || path.split('/').any(|c| c == "..") || path == "/" || paths.contains(&path) {
            return Err(PlanViolation::BadMountPath(mount.path.clone()));
        }
        paths.push(path);
    }
    let artifact = job.artifact_location.as_str();
    if artifact.is_empty() || artifact.starts_with('/') || artifact.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(PlanViolation::BadArtifactLocation(job.artifact_location.clone()));
    }
    Ok(())
}

fn check_snapshot(snapshot: &SnapshotPlan) -> Result<(), PlanViolation> {
    if let Some(class) = &snapshot.snapshot_class
        && !is_dns_subdomain(class)
    {
        return Err(PlanViolation::BadName { what: "snapshot class", value: class.clone(), kind: "name" });
    }
    for label in &snapshot.labels {
        if !is_label_key(&label.name) {
            return Err(PlanViolation::BadName { what: "label key", value: label.name.clone(), kind: "label key" });
        }
        if !is_label_value(&label.value) {
            return Err(PlanViolation::BadName { what: "label value", value: label.value.clone(), kind: "label value" });
        }
    }
    Ok(())
}

/// Bytes of every string in the plan.
pub fn plan_size(plan: &Plan) -> usize {
    match plan {
        Plan::Job(job) => {
            let env: usize = job
                .env
                .iter()
                .map(|e| {
                    e.name.len()
                        + match &e.source {
                            EnvSource::Value(v) => v.len(),
                            EnvSource::Secret(s) => s.name.len() + s.key.len(),
                        }
                })
                .sum();
            let p = &job.privileges;
            job.image.len()
                + job.command.iter().chain(&job.args).map(String::len).sum::<usize>()
                + env
                + job.mounts.iter().map(|m| m.volume.len() + m.path.len()).sum::<usize>()
                + p.add_capabilities.iter().chain(&p.host_paths).map(String::len).sum::<usize>()
                + job.artifact_location.len()
        }
        Plan::VolumeSnapshot(s) => {
            s.snapshot_class.as_ref().map_or(0, String::len)
                + s.labels.iter().map(|l| l.name.len() + l.value.len()).sum::<usize>()
        }
    }
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::super::bindings::types::{
        EnvVar, KeyValue, Mount, PodPrivileges, Resources, SecretKeyRef, Verification,
    };
    use super::*;

    fn good_job() -> JobPlan {
        JobPlan {
            image: "busybox:latest".into(),
            command: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            args: vec![],
            env: vec![EnvVar { name: "BACKUP_DIR".into(), source: EnvSource::Value("ns/p/c".into()) }],
            mounts: vec![
                Mount { volume: "data".into(), path: "/data".into(), read_only: true },
                Mount { volume: "backup".into(), path: "/backup".into(), read_only: false },
            ],
            resources: Resources { cpu_millicores: None, memory_bytes: None },
            privileges: PodPrivileges { run_as_root: true, ..PodPrivileges::none() },
            artifact_location: "ns/p/c/1.tar.gz".into(),
            verification: Verification::Sha256File("ns/p/c/1.tar.gz.sha256".into()),
        }
    }

    fn check(job: JobPlan) -> Result<(), PlanViolation> {
        check_plan(&Plan::Job(job), PlanPurpose::Backup, &PlanPolicy::default())
    }

    #[test]
    fn a_plain_job_passes() {
        assert_eq!(check(good_job()), Ok(()));
    }

    #[test]
    fn each_escalation_is_refused_with_its_own_violation() {
        type Edit = fn(&mut JobPlan);
        let cases: Vec<(&str, Edit, PlanViolation)> = vec![
            ("privileged", |j| j.privileges.privileged = true, PlanViolation::Privileged),
            ("caps", |j| j.privileges.add_capabilities = vec!["SYS_ADMIN".into()], PlanViolation::AddedCapabilities(vec!["SYS_ADMIN".into()])),
            ("hostNetwork", |j| j.privileges.host_network = true, PlanViolation::HostNamespace("network")),
            ("hostPID", |j| j.privileges.host_pid = true, PlanViolation::HostNamespace("PID")),
            ("hostIPC", |j| j.privileges.host_ipc = true, PlanViolation::HostNamespace("IPC")),
            ("token", |j| j.privileges.automount_service_account_token = true, PlanViolation::ServiceAccountToken),
            ("hostPath", |j| j.privileges.host_paths = vec!["/etc".into()], PlanViolation::HostPath("/etc".into())),
            (
                "secret env",
                |j| j.env.push(EnvVar { name: "PW".into(), source: EnvSource::Secret(SecretKeyRef { name: "s".into(), key: "k".into() }) }),
                PlanViolation::SecretEnv("PW".into()),
            ),
            ("unknown volume", |j| j.mounts[1].volume = "etc".into(), PlanViolation::UnknownVolume("etc".into())),
            ("writable data", |j| j.mounts[0].read_only = false, PlanViolation::DataWritable),
            ("relative mount", |j| j.mounts[1].path = "backup".into(), PlanViolation::BadMountPath("backup".into())),
            ("dotdot mount", |j| j.mounts[1].path = "/x/../etc".into(), PlanViolation::BadMountPath("/x/../etc".into())),
            ("same path twice", |j| j.mounts[1].path = "/data".into(), PlanViolation::BadMountPath("/data".into())),
            ("same path, spelled otherwise", |j| j.mounts[1].path = "//data/./".into(), PlanViolation::BadMountPath("//data/./".into())),
            ("the root, spelled otherwise", |j| j.mounts[1].path = "//".into(), PlanViolation::BadMountPath("//".into())),
            ("the root as /.", |j| j.mounts[1].path = "/.".into(), PlanViolation::BadMountPath("/.".into())),
            ("tens of thousands of env vars", |j| j.env = (0..20_000).map(|_| EnvVar { name: "A".into(), source: EnvSource::Value(String::new()) }).collect(),
                PlanViolation::TooMany { what: "env vars", count: 20_000, max: 128 }),
            ("a million empty args", |j| j.args = vec![String::new(); 1_000_000], PlanViolation::TooMany { what: "command and args items", count: 1_000_003, max: 256 }),
            ("duplicate env", |j| j.env.push(EnvVar { name: "BACKUP_DIR".into(), source: EnvSource::Value("x".into()) }), PlanViolation::DuplicateEnv("BACKUP_DIR".into())),
            ("zero cpu", |j| j.resources.cpu_millicores = Some(0), PlanViolation::BadResources("a CPU request of 0 millicores; leave it unset for the namespace default".into())),
            ("u32::MAX cpu", |j| j.resources.cpu_millicores = Some(u32::MAX),
                PlanViolation::BadResources(format!("{} millicores of CPU, over the operator's maximum of 64000", u32::MAX))),
            ("u64::MAX memory", |j| j.resources.memory_bytes = Some(u64::MAX),
                PlanViolation::BadResources(format!("{} bytes of memory, over the operator's maximum of {}", u64::MAX, 256u64 << 30))),
            ("no image", |j| j.image = " ".into(), PlanViolation::Missing("image")),
            ("no command", |j| j.command.clear(), PlanViolation::Missing("command")),
            ("huge command", |j| j.args = vec!["x".repeat(20_000)], PlanViolation::CommandTooLarge { size: 20_000 + "/bin/sh".len() + "-c".len() + "true".len(), max: 16 * 1024 }),
            ("bad env", |j| j.env[0].name = "1X".into(), PlanViolation::BadEnvName("1X".into())),
            ("absolute artifact", |j| j.artifact_location = "/etc/x".into(), PlanViolation::BadArtifactLocation("/etc/x".into())),
            ("sibling artifact", |j| j.artifact_location = "../data-db-1/x".into(), PlanViolation::BadArtifactLocation("../data-db-1/x".into())),
            ("escaping artifact", |j| j.artifact_location = "a/../../x".into(), PlanViolation::BadArtifactLocation("a/../../x".into())),
        ];
        for (what, edit, want) in cases {
            let mut job = good_job();
            edit(&mut job);
            assert_eq!(check(job), Err(want), "{what}");
        }
    }

    #[test]
    fn mount_paths_are_normalized() {
        for (path, want) in [("/data", "/data"), ("//data/./", "/data"), ("/a//b/", "/a/b"), ("/.", "/"), ("//", "/"), ("/a/../b", "/a/../b")] {
            assert_eq!(normalize_path(path), want, "{path}");
        }
    }

    #[test]
    fn secrets_and_images_follow_the_operator_policy() {
        let mut job = good_job();
        job.env.push(EnvVar { name: "PW".into(), source: EnvSource::Secret(SecretKeyRef { name: "s".into(), key: "k".into() }) });
        let allow = PlanPolicy { allow_secret_env: true, ..PlanPolicy::default() };
        assert_eq!(check_plan(&Plan::Job(job), PlanPurpose::Backup, &allow), Ok(()));

        let only_registry = PlanPolicy { image_allowlist: vec![super::super::image::AllowedImage::parse("registry.example.com/").expect("entry")], ..PlanPolicy::default() };
        assert_eq!(
            check_plan(&Plan::Job(good_job()), PlanPurpose::Backup, &only_registry),
            Err(PlanViolation::ImageNotAllowed("busybox:latest".into()))
        );
    }

    #[test]
    fn restore_may_write_data_and_oversized_plans_are_refused() {
        let mut job = good_job();
        job.mounts[0].read_only = false;
        assert_eq!(check_plan(&Plan::Job(job), PlanPurpose::Restore, &PlanPolicy::default()), Ok(()));
        let mut big = good_job();
        big.env = (0..100).map(|i| EnvVar { name: format!("V{i}"), source: EnvSource::Value("x".repeat(1000)) }).collect();
        assert!(matches!(check(big), Err(PlanViolation::PlanTooLarge { .. })));
    }

    #[test]
    fn snapshot_plans_need_valid_names() {
        let plan = |class: Option<&str>, label: (&str, &str)| {
            Plan::VolumeSnapshot(SnapshotPlan {
                snapshot_class: class.map(Into::into),
                labels: vec![KeyValue { name: label.0.into(), value: label.1.into() }],
            })
        };
        let p = PlanPolicy::default();
        assert_eq!(check_plan(&plan(Some("csi.snap"), ("team", "data-0")), PlanPurpose::Backup, &p), Ok(()));
        assert!(check_plan(&plan(Some("UPPER"), ("team", "x")), PlanPurpose::Backup, &p).is_err());
        assert!(check_plan(&plan(None, ("team", "-x")), PlanPurpose::Backup, &p).is_err());
        assert!(check_plan(&plan(None, ("bad key!", "x")), PlanPurpose::Backup, &p).is_err());
        assert_eq!(check_plan(&plan(None, ("team", "x")), PlanPurpose::Restore, &p), Err(PlanViolation::SnapshotCannot("restore")));
    }
}
