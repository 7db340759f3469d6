# backup-operator: developer entry points. `make help` lists them.
SHELL := /bin/bash
CLUSTER := tests/cluster

.PHONY: help test cluster-up cluster-down cluster-status
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: ## run every test: unit, plugin and integration tests on the local cluster (brought up if needed)
	scripts/test.sh

cluster-up: ## start the local single-node Kubernetes (builds and caches its binaries on first use)
	$(CLUSTER)/cluster-up.sh

cluster-down: ## stop the local cluster and remove its state
	$(CLUSTER)/cluster-down.sh

cluster-status: ## show whether the local cluster is up and healthy
	$(CLUSTER)/cluster-status.sh

.PHONY: demo run install uninstall crd plugins bench image deploy undeploy deploy-namespaced undeploy-namespaced bench-scale
demo: ## bring up the local cluster and show the operator backing up a StatefulSet
	scripts/demo.sh

KUBECONFIG ?= $(shell . tests/cluster/lib.sh && [ -f "$$KUBECONFIG_PATH" ] && echo "$$KUBECONFIG_PATH")
export KUBECONFIG
KUBECTL := $(shell . tests/cluster/lib.sh && [ -x "$$KUBE_BIN/kubectl" ] && echo "$$KUBE_BIN/kubectl" || echo kubectl)

run: ## run the operator locally against the current cluster (the local one if KUBECONFIG is unset)
	cargo run --locked --bin backup-operator -- run

install: ## apply the CRDs to the current cluster
	$(KUBECTL) apply -k config/crd

uninstall: ## delete the CRDs (and every BackupPolicy and BackupRestore) from the current cluster
	$(KUBECTL) delete --ignore-not-found -k config/crd

IMG ?= backup-operator:latest
export IMG
image: ## build the operator's image offline (IMG=backup-operator:latest), import it into the local cluster if up
	scripts/build-image.sh $$( [ -S /var/tmp/backup-operator-cluster/containerd.sock ] && echo --import )

deploy: ## deploy the operator to the current cluster: CRDs, ClusterRole, Deployment (IMG=...)
	KUBECTL=$(KUBECTL) scripts/deploy.sh apply default

undeploy: ## remove the operator's Deployment and RBAC (the CRDs, policies and backups stay)
	KUBECTL=$(KUBECTL) scripts/deploy.sh delete default

deploy-namespaced: ## deploy the operator for one namespace with a Role (NAMESPACE=..., IMG=...)
	KUBECTL=$(KUBECTL) scripts/deploy.sh apply namespaced

undeploy-namespaced: ## remove the one-namespace operator (NAMESPACE=...)
	KUBECTL=$(KUBECTL) scripts/deploy.sh delete namespaced

crd: ## regenerate config/crd/ and docs/reference/crd-fields.md from the Rust types
	cargo run --locked --bin backup-operator -- crd > config/crd/backup.example.com_backuppolicies.yaml
	cargo run --locked --bin backup-operator -- crd --kind backuprestore > config/crd/backup.example.com_backuprestores.yaml
	cargo run --locked --bin backup-operator -- crd --docs > docs/reference/crd-fields.md
	cp config/crd/backup.example.com_backuppolicies.yaml config/crd/backup.example.com_backuprestores.yaml charts/backup-operator/crds/

plugins: ## build the built-in strategy plugins (WebAssembly components)
	scripts/build-plugins.sh plugins

bench: ## run the plugin call benchmarks
	cargo bench --locked --bench plan_call

bench-scale: ## the operator's API work with 100 and 1,000 policies on the local cluster (node cordoned meanwhile)
	cargo build --locked --release --bin backup-operator
	cargo run --locked --release --example scale
