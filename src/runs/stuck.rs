//! Why a run that has not finished is not getting anywhere, from its pods and its Job's events:
//! refused pods (Pod Security Admission, quota), image errors, an unschedulable pod, a container
//! that cannot start. Pure: the host reads the objects, this names the cause.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;

use super::report::MAX_MESSAGE_BYTES;
use crate::base::text::bound;

/// A cause, with a reason word that is a public contract (condition and history reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub reason: &'static str,
    pub message: String,
}

const IMAGE_ERRORS: [&str; 5] = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"];
const START_ERRORS: [&str; 4] = ["CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff"];

/// How long a run may wait for a node before the wait is reported: the scheduler often waits
/// briefly for a volume to bind, a node to free or the autoscaler, and a short wait should
/// neither flip Ready nor cost status writes. At most half the policy's start timeout.
pub const UNSCHEDULABLE_GRACE_SECONDS: i64 = 30;

impl Stuck {
    /// Whether the cause often clears on its own (and is reported only after a grace).
    pub fn clears_on_its_own(&self) -> bool {
        self.reason == "Unschedulable"
    }
}

fn stuck(reason: &'static str, message: String) -> Option<Stuck> {
    Some(Stuck { reason, message: bound(&message, MAX_MESSAGE_BYTES) })
}

/// The cause for the Job named `job`, if its pods or events show one.
pub fn cause(job: &str, pods: &[Pod], events: &[Event]) -> Option<Stuck> {
    let own: Vec<&Pod> = pods.iter().filter(|p| p.labels().get("batch.kubernetes.io/job-name").map(String::as_str) == Some(job)).collect();
    for pod in &own {
        let Some(status) = pod.status.as_ref() else { continue };
        for c in status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()) {
            let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            let message = format!("{reason}: {}", waiting.message.as_deref().unwrap_or("(no message)"));
            if IMAGE_ERRORS.contains(&reason) {
                return stuck("ImageError", format!("pod {}: {message}", pod.name_any()));
            }
            if START_ERRORS.contains(&reason) {
                return stuck("RunStuck", format!("pod {}: {message}", pod.name_any()));
            }
        }
        if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False") {
            return stuck("Unschedulable", format!("pod {}: {}", pod.name_any(), c.message.as_deref().unwrap_or("cannot be scheduled")));
        }
    }
    if own.is_empty()
        && let Some(e) = events.iter().filter(|e| e.reason.as_deref() == Some("FailedCreate")).max_by_key(|e| e.last_timestamp.clone().map(|t| t.0))
    {
        return stuck("PodRejected", format!("the Job's pods are refused: {}", e.message.as_deref().unwrap_or("FailedCreate")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "run-1-abcde", "labels": {"batch.kubernetes.io/job-name": "run-1"}},
            "status": status
        }))
        .expect("pod")
    }

    fn waiting(reason: &str) -> serde_json::Value {
        serde_json::json!({"containerStatuses": [{"name": "backup", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "details"}}}]})
    }

    #[test]
    fn causes_are_named() {
        let rejected: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "involvedObject": {"name": "run-1"}, "reason": "FailedCreate",
            "message": "pods \"run-1-x\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true"
        }))
        .expect("event");
        let unschedulable = pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}));
        type Case = (&'static str, Vec<Pod>, Vec<Event>, Option<&'static str>, &'static str);
        let cases: Vec<Case> = vec![
            ("image pull", vec![pod(waiting("ImagePullBackOff"))], vec![], Some("ImageError"), "ImagePullBackOff"),
            ("bad image name", vec![pod(waiting("InvalidImageName"))], vec![], Some("ImageError"), "InvalidImageName"),
            ("config error", vec![pod(waiting("CreateContainerConfigError"))], vec![], Some("RunStuck"), "CreateContainerConfigError"),
            ("unschedulable", vec![unschedulable], vec![], Some("Unschedulable"), "Insufficient cpu"),
            ("no pods, refused", vec![], vec![rejected], Some("PodRejected"), "PodSecurity"),
            ("just starting", vec![pod(waiting("ContainerCreating"))], vec![], None, ""),
            ("nothing yet", vec![], vec![], None, ""),
        ];
        for (what, pods, events, reason, text) in cases {
            let got = cause("run-1", &pods, &events);
            assert_eq!(got.as_ref().map(|s| s.reason), reason, "{what}");
            assert!(got.is_none_or(|s| s.message.contains(text)), "{what}");
        }
        assert_eq!(cause("other-run", &[pod(waiting("ImagePullBackOff"))], &[]), None, "only the Job's own pods count");
    }
}
