//! What unfinished restores hold: the backups they read (kept from retention) and the PVCs they
//! write (not backed up meanwhile). Read by the policy controller, written by the restores.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;

use crate::api::{BackupRestore, RestorePhase};
use crate::base::names::ANNOTATION_RESTORE_LOCK;

/// What unfinished restores in a namespace hold: the backup runs they read (per policy) and the
/// PVCs they write. The policy controller keeps those runs from retention and does not back up
/// those PVCs meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    /// (policy, run) pairs.
    pub runs: std::collections::BTreeSet<(String, String)>,
    /// PVC → the restore writing it.
    pub targets: std::collections::BTreeMap<String, String>,
}

/// What the restores of a namespace hold, from their statuses and from the locks on `claims`.
/// A restore holds its target once it is under way (Pending or Running, said on its status) or
/// once it has locked the claim; one that never got a status (refused by the API server, not yet
/// looked at) holds nothing, so that it cannot stop a PVC's backups for good.
pub fn holds(restores: &[BackupRestore], claims: &[PersistentVolumeClaim]) -> Holds {
    let mut holds = Holds::default();
    let unfinished = |r: &&BackupRestore| r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| !p.finished());
    for r in restores.iter().filter(unfinished) {
        let status = r.status.clone().unwrap_or_default();
        if let Some(b) = &status.backup {
            holds.runs.insert((b.policy.clone(), b.run_name.clone()));
        }
        let target = status.target_claim.clone().unwrap_or_else(|| r.spec.target_name());
        holds.targets.insert(target, r.name_any());
    }
    for claim in claims {
        let Some(holder) = claim.annotations().get(ANNOTATION_RESTORE_LOCK) else { continue };
        let live = restores.iter().find(|r| r.uid().as_deref() == Some(holder.as_str()) && !r.status.as_ref().and_then(|s| s.phase).is_some_and(RestorePhase::finished));
        if let Some(r) = live {
            holds.targets.entry(claim.name_any()).or_insert_with(|| r.name_any());
        }
    }
    holds
}
