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

.PHONY: demo run install uninstall crd plugins bench
demo: ## bring up the local cluster and show the operator backing up a StatefulSet
	scripts/demo.sh

KUBECONFIG ?= $(shell . tests/cluster/lib.sh && [ -f "$$KUBECONFIG_PATH" ] && echo "$$KUBECONFIG_PATH")
export KUBECONFIG
KUBECTL := $(shell . tests/cluster/lib.sh && [ -x "$$KUBE_BIN/kubectl" ] && echo "$$KUBE_BIN/kubectl" || echo kubectl)

run: ## run the operator locally against the current cluster (the local one if KUBECONFIG is unset)
	cargo run --locked --bin backup-operator -- run

install: ## apply the CRD to the current cluster
	$(KUBECTL) apply -f config/crd/

uninstall: ## delete the CRD (and every BackupPolicy) from the current cluster
	$(KUBECTL) delete --ignore-not-found -f config/crd/

crd: ## regenerate config/crd/ from the Rust types
	cargo run --locked --bin backup-operator -- crd > config/crd/backup.example.com_backuppolicies.yaml
	cargo run --locked --bin backup-operator -- crd --kind backuprestore > config/crd/backup.example.com_backuprestores.yaml

plugins: ## build the built-in strategy plugins (WebAssembly components)
	scripts/build-plugins.sh plugins

bench: ## run the plugin call benchmarks
	cargo bench --locked --bench plan_call
