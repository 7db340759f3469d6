//! backup-operator: schedules and runs backups of StatefulSet PersistentVolumeClaims.
