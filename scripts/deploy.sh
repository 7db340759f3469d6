#!/usr/bin/env bash
# Deploys the operator with the shipped manifests (kustomize, built into kubectl):
#   scripts/deploy.sh apply  default      # make deploy: CRDs, ClusterRole, Deployment in backup-operator-system
#   scripts/deploy.sh delete default      # make undeploy: the Deployment and RBAC; CRDs (and so the
#                                         # policies and restores) stay: `make uninstall` removes them
#   scripts/deploy.sh apply  namespaced   # make deploy-namespaced: Role and Deployment in $NAMESPACE
#   scripts/deploy.sh delete namespaced   # make undeploy-namespaced
# IMG sets the image (default backup-operator:latest), NAMESPACE the namespaced install's namespace
# (default backup-operator), WATCH_NAMESPACE limits the cluster install to one namespace (its
# permissions stay the ClusterRole's), KUBECTL the kubectl to use.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?apply or delete}" variant="${2:?default or namespaced}"
img="${IMG:-backup-operator:latest}"
kubectl="${KUBECTL:-kubectl}"
name="$img" tag="latest"
if [[ "${img##*/}" == *:* ]]; then name="${img%:*}" tag="${img##*:}"; fi
namespace="${NAMESPACE:-backup-operator}"
# Kustomize takes bases by relative path only: the overlay lives next to them, for this run.
overlay="$(mktemp -d config/.deploy.XXXXXX)"
trap 'rm -rf "$overlay"' EXIT

# An overlay of config/<variant> with the image (and namespace) set.
overlay_of() {
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    [ "$variant" = namespaced ] && echo "namespace: $namespace"
    echo "resources:"
    for dir in "$@"; do echo "  - ../$dir"; done
    echo "images:"
    echo "  - {name: backup-operator, newName: \"$name\", newTag: \"$tag\"}"
    if [ -n "${WATCH_NAMESPACE:-}" ] && [ "$variant" = default ]; then
      echo "patches:"
      echo "  - target: {kind: Deployment, name: backup-operator}"
      echo "    patch: '[{\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/env/-\", \"value\": {\"name\": \"BACKUP_OPERATOR_NAMESPACE\", \"value\": \"$WATCH_NAMESPACE\"}}]'"
    fi
    # The namespace transformer leaves a RoleBinding's subject alone: set it too.
    if [ "$variant" = namespaced ]; then
      echo "patches:"
      echo "  - target: {kind: RoleBinding, name: backup-operator}"
      echo "    patch: '[{\"op\": \"replace\", \"path\": \"/subjects/0/namespace\", \"value\": \"$namespace\"}]'"
    fi
  } > "$overlay/kustomization.yaml"
}

case "$action/$variant" in
  apply/default)
    overlay_of default
    "$kubectl" apply -k "$overlay"
    "$kubectl" -n backup-operator-system rollout status deployment/backup-operator --timeout=180s
    ;;
  delete/default)
    overlay_of rbac manager
    "$kubectl" delete -k "$overlay" --ignore-not-found
    ;;
  apply/namespaced)
    "$kubectl" get namespace "$namespace" >/dev/null 2>&1 || "$kubectl" create namespace "$namespace"
    overlay_of namespaced
    "$kubectl" apply -k "$overlay"
    "$kubectl" -n "$namespace" rollout status deployment/backup-operator --timeout=180s
    ;;
  delete/namespaced)
    overlay_of namespaced
    "$kubectl" delete -k "$overlay" --ignore-not-found
    ;;
  *) echo "usage: $0 apply|delete default|namespaced" >&2; exit 2 ;;
esac
