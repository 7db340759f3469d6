//! Sample strategy requests, shared by the plugin tests and the benchmark.
#![allow(dead_code)]

use backup_operator::strategy::bindings::types::{
    AccessMode, ArtifactRequest, BackupRequest, Destination, DestinationKind, KeyValue, PolicyInfo, PvcInfo, S3Destination, VolumeMode,
};

pub fn policy(config: &str) -> PolicyInfo {
    PolicyInfo {
        name: "db-backup".into(),
        namespace: "prod".into(),
        scheduled_time: "2026-11-29T01:00:00Z".into(),
        scheduled_stamp: "20261129t010000z".into(),
        run_name: "db-backup-data-db-0-29401260".into(),
        backup_image: "busybox:latest".into(),
        destination: backup_operator::strategy::bindings::types::Destination {
            name: String::new(),
            kind: backup_operator::strategy::bindings::types::DestinationKind::Claim("backup-storage".into()),
        },
        repository_password_env: None,
        retention_count: 7,
        config: config.into(),
    }
}

pub fn pvc(name: &str, mode: VolumeMode) -> PvcInfo {
    PvcInfo {
        name: name.into(),
        namespace: "prod".into(),
        labels: vec![KeyValue { name: "app".into(), value: "db".into() }],
        storage_class: Some("standard".into()),
        capacity_bytes: Some(1 << 30),
        access_modes: vec![AccessMode::ReadWriteOnce],
        volume_mode: mode,
        node_name: Some("backup-node".into()),
    }
}

pub fn backup_request(config: &str) -> BackupRequest {
    BackupRequest { policy: policy(config), pvc: pvc("data-db-0", VolumeMode::Filesystem) }
}

pub fn artifact_request(config: &str, artifact: &str) -> ArtifactRequest {
    ArtifactRequest { policy: policy(config), pvc: pvc("data-db-0", VolumeMode::Filesystem), artifact: artifact.into() }
}

/// An S3 destination as the host describes it to a plan.
pub fn s3_destination() -> Destination {
    Destination {
        name: "offsite".into(),
        kind: DestinationKind::S3(S3Destination {
            endpoint: "http://s3.example:9000".into(),
            bucket: "backups".into(),
            prefix: "team/prod/db-backup/data-db-0".into(),
            region: "eu-west-1".into(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            ca_file: None,
        }),
    }
}
