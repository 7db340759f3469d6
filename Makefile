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

.PHONY: demo
demo: ## bring up the local cluster and show the operator backing up a StatefulSet
	@echo "make demo: not implemented yet: the controller arrives with issue 4" >&2; exit 2
