//! Renders a checked job plan into a Kubernetes Job. Pure: the host, not the plugin, decides the
//! pod's security settings, volumes and metadata.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::strategy::bindings::types::{EnvSource, JobPlan, Verification};

/// Labels every child of a policy carries: part of the public contract
/// (`kubectl get jobs -l backup-policy=<policy>`).
pub const LABEL_POLICY: &str = "backup-policy";
pub const LABEL_PVC: &str = "pvc";
pub const ANNOTATION_SCHEDULED_TIME: &str = "backup.example.com/scheduled-time";
pub const ANNOTATION_ARTIFACT: &str = "backup.example.com/artifact";
pub const ANNOTATION_VERIFICATION: &str = "backup.example.com/verification";
pub const ANNOTATION_PLUGIN: &str = "backup.example.com/plugin";

/// The user plugins run as when they do not need root: `nobody`.
const NON_ROOT_UID: i64 = 65534;
/// What root keeps when a plan needs it (reading and restoring files of every owner).
const ROOT_CAPABILITIES: [&str; 4] = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"];
const SCRATCH_SIZE: &str = "1Gi";

/// Everything about a Job that comes from the host rather than the plan.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub name: String,
    pub namespace: String,
    pub policy: String,
    pub pvc: String,
    pub storage_claim: String,
    pub owner: Option<OwnerReference>,
    /// RFC 3339.
    pub scheduled_time: String,
    /// `name@sha256-prefix` of the plugin that planned it.
    pub plugin: String,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    /// Whether the data volume may be written (restores only).
    pub data_writable: bool,
}

fn verification_annotation(v: &Verification) -> String {
    match v {
        Verification::Sha256File(path) => format!("sha256-file:{path}"),
        Verification::SnapshotReady => "snapshot-ready".into(),
        Verification::None => "none".into(),
    }
}

pub fn policy_labels(policy: &str, pvc: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_POLICY.to_owned(), policy.to_owned()), (LABEL_PVC.to_owned(), pvc.to_owned())])
}

pub fn render_job(ctx: &JobContext, plan: &JobPlan) -> Job {
    let labels = policy_labels(&ctx.policy, &ctx.pvc);
    let annotations = BTreeMap::from([
        (ANNOTATION_SCHEDULED_TIME.to_owned(), ctx.scheduled_time.clone()),
        (ANNOTATION_ARTIFACT.to_owned(), plan.artifact_location.clone()),
        (ANNOTATION_VERIFICATION.to_owned(), verification_annotation(&plan.verification)),
        (ANNOTATION_PLUGIN.to_owned(), ctx.plugin.clone()),
    ]);

    let mut volumes = Vec::new();
    for mount in &plan.mounts {
        if volumes.iter().any(|v: &Volume| v.name == mount.volume) {
            continue;
        }
        let volume = match mount.volume.as_str() {
            "data" => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ctx.pvc.clone(),
                    read_only: Some(!ctx.data_writable),
                }),
                ..Volume::default()
            },
            "backup" => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ctx.storage_claim.clone(),
                    read_only: None,
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
    let mounts = plan
        .mounts
        .iter()
        .map(|m| VolumeMount {
            name: m.volume.clone(),
            mount_path: m.path.clone(),
            // The data volume is read-only unless this Job restores into it, whatever the plan says.
            read_only: Some(m.read_only || (m.volume == "data" && !ctx.data_writable)),
            ..VolumeMount::default()
        })
        .collect();

    let env = plan
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

    let as_root = plan.privileges.run_as_root;
    let container_security = SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(!as_root),
        run_as_user: Some(if as_root { 0 } else { NON_ROOT_UID }),
        run_as_group: Some(if as_root { 0 } else { NON_ROOT_UID }),
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
                        fs_group: (!as_root).then_some(NON_ROOT_UID),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
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
            policy: "db-backup".into(),
            pvc: "data-db-0".into(),
            storage_claim: "backup-storage".into(),
            owner: None,
            scheduled_time: "2026-11-29T01:00:00Z".into(),
            plugin: "tar@0123456789ab".into(),
            backoff_limit: 2,
            active_deadline_seconds: Some(3600),
            data_writable: false,
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
            artifact_location: "prod/db-backup/data-db-0/x.tar.gz".into(),
            verification: Verification::Sha256File("prod/db-backup/data-db-0/x.tar.gz.sha256".into()),
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
        assert_eq!(ann[ANNOTATION_SCHEDULED_TIME], "2026-11-29T01:00:00Z");
        assert_eq!(ann[ANNOTATION_ARTIFACT], "prod/db-backup/data-db-0/x.tar.gz");
        assert_eq!(ann[ANNOTATION_VERIFICATION], "sha256-file:prod/db-backup/data-db-0/x.tar.gz.sha256");
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
