//! Renders a checked job plan into a Kubernetes Job. Pure: the host, not the plugin, decides the
//! pod's security settings, volumes and metadata.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::base::names::{ANNOTATION_ARTIFACT, ANNOTATION_VERIFICATION};
use crate::strategy::bindings::types::{EnvSource, JobPlan, Verification};

/// The user plugins run as when they do not need root: `nobody`.
const NON_ROOT_UID: i64 = 65534;
/// What root keeps when a plan needs it (reading and restoring files of every owner). All three
/// are in Pod Security `baseline`'s allowed set (DAC_READ_SEARCH is not, and DAC_OVERRIDE covers it).
const ROOT_CAPABILITIES: [&str; 3] = ["CHOWN", "DAC_OVERRIDE", "FOWNER"];
const SCRATCH_SIZE: &str = "1Gi";
/// The host's volume with a destination's CA bundle (not a logical volume: plans cannot mount it).
const CA_VOLUME: &str = "destination-ca";
/// Where a Job reports what it wrote (read by the host from the pod's status).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Everything about a Job that comes from the host rather than the plan.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub name: String,
    pub namespace: String,
    /// The run's labels ([`crate::base::names::labels`]), on the Job and its pods.
    pub labels: BTreeMap<String, String>,
    /// The run's annotations (run, scheduled time, plugin, ...); the plan's artifact and
    /// verification are added.
    pub annotations: BTreeMap<String, String>,
    /// The claim mounted as `data` (the PVC backed up or restored into).
    pub data_claim: String,
    /// The claim mounted as `backup` (empty for object storage, where the plan check refuses it).
    pub storage_claim: String,
    /// Secret keys set as environment variables (destination credentials, repository password).
    pub secret_env: Vec<crate::runs::destination::SecretEnv>,
    /// A Secret key mounted as the destination's CA bundle: (secret, key).
    pub ca_bundle: Option<(String, String)>,
    /// The only directory of the storage claim the Job sees as `backup`.
    pub backup_sub_path: String,
    pub owner: Option<OwnerReference>,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    /// Whether the data volume may be written (restores only).
    pub data_writable: bool,
    /// Whether the backup volume may be written (not for restores: a restore never changes a
    /// backup).
    pub backup_writable: bool,
    /// Run on this node: a ReadWriteOnce claim is attached there.
    pub node: Option<String>,
    /// The policy's `podSecurityContext`: run as this user, whatever the plan asks.
    pub run_as: Option<crate::api::RunAs>,
}

fn verification_annotation(v: &Verification) -> String {
    match v {
        Verification::Sha256File(path) => format!("sha256-file:{path}"),
        Verification::SnapshotReady => "snapshot-ready".into(),
        Verification::CheckedByJob(how) => format!("checked-by-job:{how}"),
        Verification::None => "none".into(),
    }
}

fn node_affinity(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.to_owned()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

pub fn render_job(ctx: &JobContext, plan: &JobPlan) -> Job {
    let labels = ctx.labels.clone();
    let mut annotations = ctx.annotations.clone();
    annotations.insert(ANNOTATION_ARTIFACT.to_owned(), plan.artifact_location.clone());
    annotations.insert(ANNOTATION_VERIFICATION.to_owned(), verification_annotation(&plan.verification));

    let mut volumes = Vec::new();
    for mount in &plan.mounts {
        if volumes.iter().any(|v: &Volume| v.name == mount.volume) {
            continue;
        }
        let volume = match mount.volume.as_str() {
            "data" => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ctx.data_claim.clone(),
                    read_only: Some(!ctx.data_writable),
                }),
                ..Volume::default()
            },
            "backup" => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ctx.storage_claim.clone(),
                    read_only: (!ctx.backup_writable).then_some(true),
                }),
                ..Volume::default()
            },
            // Only the logical volumes pass the plan check; anything else is scratch space.
            _ => Volume {
                empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity(SCRATCH_SIZE.into())), medium: None }),
                ..Volume::default()
            },
        };
        volumes.push(Volume { name: mount.volume.clone(), ..volume });
    }
    // The destination's CA bundle, from its credentials Secret: the host's volume, not the plan's.
    if let Some((secret, key)) = &ctx.ca_bundle {
        volumes.push(Volume {
            name: CA_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath { key: key.clone(), path: crate::runs::destination::CA_FILE_NAME.into(), mode: None }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let mut mounts: Vec<VolumeMount> = plan
        .mounts
        .iter()
        .map(|m| VolumeMount {
            name: m.volume.clone(),
            // The path the plan check judged, not the plugin's spelling of it.
            mount_path: crate::strategy::check::normalize_path(&m.path),
            // The data volume is read-only unless this Job restores into it, whatever the plan says.
            read_only: Some(m.read_only || (m.volume == "data" && !ctx.data_writable) || (m.volume == "backup" && !ctx.backup_writable)),
            // A run sees only its own directory of the storage claim (the kubelet creates it).
            sub_path: (m.volume == "backup").then(|| ctx.backup_sub_path.clone()),
            ..VolumeMount::default()
        })
        .collect();
    if ctx.ca_bundle.is_some() {
        mounts.push(VolumeMount { name: CA_VOLUME.into(), mount_path: crate::runs::destination::CA_DIR.into(), read_only: Some(true), ..VolumeMount::default() });
    }

    let mut env: Vec<EnvVar> = plan
        .env
        .iter()
        .map(|e| match &e.source {
            EnvSource::Value(v) => EnvVar { name: e.name.clone(), value: Some(v.clone()), value_from: None },
            EnvSource::Secret(s) => EnvVar {
                name: e.name.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector { name: s.name.clone(), key: s.key.clone(), optional: None }),
                    ..EnvVarSource::default()
                }),
            },
        })
        .collect();
    // Credentials and the repository password, which the plan check keeps plans from naming.
    env.extend(ctx.secret_env.iter().map(|e| EnvVar {
        name: e.env.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: e.secret.clone(), key: e.key.clone(), optional: None }),
            ..EnvVarSource::default()
        }),
    }));

    let mut quantities = BTreeMap::new();
    if let Some(cpu) = plan.resources.cpu_millicores {
        quantities.insert("cpu".to_owned(), Quantity(format!("{cpu}m")));
    }
    if let Some(memory) = plan.resources.memory_bytes {
        quantities.insert("memory".to_owned(), Quantity(memory.to_string()));
    }
    let resources = (!quantities.is_empty()).then(|| ResourceRequirements {
        limits: Some(quantities.clone()),
        requests: Some(quantities),
        ..ResourceRequirements::default()
    });

    // The policy's user wins over the plan: a namespace that allows no root gets none.
    let as_root = plan.privileges.run_as_root && ctx.run_as.is_none();
    let (uid, gid, fs_group) = match &ctx.run_as {
        Some(r) => (r.run_as_user, r.run_as_group.unwrap_or(r.run_as_user), r.fs_group),
        None if as_root => (0, 0, None),
        None => (NON_ROOT_UID, NON_ROOT_UID, Some(NON_ROOT_UID)),
    };
    let container_security = SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(!as_root),
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: as_root.then(|| ROOT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
        }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..SecurityContext::default()
    };

    let container = Container {
        name: "backup".into(),
        image: Some(plan.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(plan.command.clone()),
        args: (!plan.args.is_empty()).then(|| plan.args.clone()),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources,
        security_context: Some(container_security),
        // A run reports what it wrote in its termination message; a failed one leaves its last
        // log lines there instead.
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };

    let meta = |annotations: Option<BTreeMap<String, String>>| ObjectMeta {
        labels: Some(labels.clone()),
        annotations,
        ..ObjectMeta::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(ctx.name.clone()),
            namespace: Some(ctx.namespace.clone()),
            owner_references: ctx.owner.clone().map(|o| vec![o]),
            ..meta(Some(annotations))
        },
        spec: Some(JobSpec {
            backoff_limit: Some(ctx.backoff_limit),
            active_deadline_seconds: ctx.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(meta(None)),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    host_network: Some(false),
                    host_pid: Some(false),
                    host_ipc: Some(false),
                    security_context: Some(PodSecurityContext {
                        fs_group,
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    affinity: ctx.node.as_deref().map(node_affinity),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::bindings::types::{EnvVar as PlanEnv, Mount, PodPrivileges, Resources, SecretKeyRef};

    fn ctx() -> JobContext {
        JobContext {
            name: "db-backup-data-db-0-29401234".into(),
            namespace: "prod".into(),
            labels: crate::base::names::labels("db-backup", "uid-1", Some("data-db-0"), crate::base::names::RunKind::Backup),
            annotations: BTreeMap::from([("backup.example.com/scheduled-time".to_owned(), "2026-11-29T01:00:00Z".to_owned())]),
            data_claim: "data-db-0".into(),
            storage_claim: "backup-storage".into(),
            secret_env: Vec::new(),
            ca_bundle: None,
            backup_sub_path: "prod/db-backup/data-db-0".into(),
            owner: None,
            backoff_limit: 2,
            active_deadline_seconds: Some(3600),
            data_writable: false,
            backup_writable: true,
            node: None,
            run_as: None,
        }
    }

    fn plan(run_as_root: bool, data_read_only: bool) -> JobPlan {
        JobPlan {
            image: "busybox:latest".into(),
            command: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            args: vec![],
            env: vec![
                PlanEnv { name: "A".into(), source: EnvSource::Value("1".into()) },
                PlanEnv { name: "S".into(), source: EnvSource::Secret(SecretKeyRef { name: "sec".into(), key: "k".into() }) },
            ],
            mounts: vec![
                Mount { volume: "data".into(), path: "/data".into(), read_only: data_read_only },
                Mount { volume: "backup".into(), path: "/backup".into(), read_only: false },
                Mount { volume: "scratch".into(), path: "/scratch".into(), read_only: false },
            ],
            resources: Resources { cpu_millicores: Some(250), memory_bytes: Some(64 << 20) },
            privileges: PodPrivileges { run_as_root, ..PodPrivileges::none() },
            artifact_location: "x.tar.gz".into(),
            verification: Verification::Sha256File("x.tar.gz.sha256".into()),
        }
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec")
    }

    #[test]
    fn metadata_carries_the_public_labels_and_the_run() {
        let job = render_job(&ctx(), &plan(false, true));
        let labels = job.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("backup-policy").map(String::as_str), Some("db-backup"));
        assert_eq!(labels.get("pvc").map(String::as_str), Some("data-db-0"));
        let template_labels = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone());
        assert_eq!(template_labels, Some(labels));
        let ann = job.metadata.annotations.expect("annotations");
        assert_eq!(ann["backup.example.com/scheduled-time"], "2026-11-29T01:00:00Z");
        assert_eq!(ann[ANNOTATION_ARTIFACT], "x.tar.gz");
        assert_eq!(ann[ANNOTATION_VERIFICATION], "sha256-file:x.tar.gz.sha256");
        let spec = job.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(3600));
    }

    #[test]
    fn data_is_read_only_even_if_the_plan_says_otherwise() {
        let job = render_job(&ctx(), &plan(false, false));
        let spec = pod(&job);
        let data = spec.volumes.as_ref().expect("volumes").iter().find(|v| v.name == "data").expect("data volume");
        assert_eq!(data.persistent_volume_claim.as_ref().map(|p| (p.claim_name.as_str(), p.read_only)), Some(("data-db-0", Some(true))));
        let mount = spec.containers[0].volume_mounts.as_ref().expect("mounts").iter().find(|m| m.name == "data").expect("mount");
        assert_eq!(mount.read_only, Some(true));
        let backup = spec.volumes.as_ref().expect("volumes").iter().find(|v| v.name == "backup").expect("backup volume");
        assert_eq!(backup.persistent_volume_claim.as_ref().map(|p| p.claim_name.as_str()), Some("backup-storage"));
        let backup_mount = spec.containers[0].volume_mounts.as_ref().expect("mounts").iter().find(|m| m.name == "backup").expect("mount");
        assert_eq!(backup_mount.sub_path.as_deref(), Some("prod/db-backup/data-db-0"), "a run sees only its own directory");
        assert_eq!(spec.containers[0].termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));

        let restore = render_job(&JobContext { data_writable: true, ..ctx() }, &plan(true, false));
        let mount = pod(&restore).containers[0].volume_mounts.as_ref().expect("mounts").iter().find(|m| m.name == "data").cloned();
        assert_eq!(mount.and_then(|m| m.read_only), Some(false), "a restore writes into data");
    }

    #[test]
    fn non_root_unless_the_plan_needs_root_and_never_privileged() {
        let job = render_job(&ctx(), &plan(false, true));
        let spec = pod(&job);
        let sc = spec.containers[0].security_context.clone().expect("security context");
        assert_eq!((sc.run_as_non_root, sc.run_as_user, sc.privileged), (Some(true), Some(65534), Some(false)));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.add.clone()), None);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.host_network, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));

        let root = render_job(&ctx(), &plan(true, true));
        let sc = pod(&root).containers[0].security_context.clone().expect("security context");
        assert_eq!((sc.run_as_non_root, sc.run_as_user), (Some(false), Some(0)));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_owned()]));
        assert_eq!(sc.capabilities.and_then(|c| c.add).map(|a| a.len()), Some(ROOT_CAPABILITIES.len()));
    }

    #[test]
    fn the_policys_user_overrides_a_plan_that_asks_for_root() {
        let run_as = crate::api::RunAs { run_as_user: 1000, run_as_group: None, fs_group: Some(2000) };
        let job = render_job(&JobContext { run_as: Some(run_as), ..ctx() }, &plan(true, true));
        let spec = pod(&job);
        let sc = spec.containers[0].security_context.clone().expect("security context");
        assert_eq!((sc.run_as_non_root, sc.run_as_user, sc.run_as_group), (Some(true), Some(1000), Some(1000)));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.add.clone()), None, "no added capabilities: Pod Security restricted");
        assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
        assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(2000));
    }

    #[test]
    fn a_claim_in_use_pins_the_job_to_its_node() {
        assert!(pod(&render_job(&ctx(), &plan(false, true))).affinity.is_none());
        let job = render_job(&JobContext { node: Some("node-a".into()), ..ctx() }, &plan(false, true));
        let terms = pod(&job)
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|s| s.node_selector_terms.clone())
            .expect("required node affinity");
        let field = &terms[0].match_fields.as_ref().expect("match fields")[0];
        assert_eq!((field.key.as_str(), field.operator.as_str(), field.values.clone()), ("metadata.name", "In", Some(vec!["node-a".to_owned()])));
    }

    #[test]
    fn env_resources_and_scratch() {
        let job = render_job(&ctx(), &plan(false, true));
        let c = &pod(&job).containers[0];
        let env = c.env.as_ref().expect("env");
        assert_eq!(env[0].value.as_deref(), Some("1"));
        assert_eq!(env[1].value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).map(|s| s.name.as_str()), Some("sec"));
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).expect("limits");
        assert_eq!(limits["cpu"].0, "250m");
        assert_eq!(limits["memory"].0, (64u64 << 20).to_string());
        let scratch = pod(&job).volumes.as_ref().expect("volumes").iter().find(|v| v.name == "scratch").cloned();
        assert!(scratch.and_then(|v| v.empty_dir).is_some());
    }
}
