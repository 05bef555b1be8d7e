# mlops-operator — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE ?= $(or $(MLOPS_CACHE),$(HOME)/.cache/mlops-operator)
export MLOPS_CACHE := $(CACHE)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with the package and its dev tools.

.PHONY: test-deps
test-deps: ## Install the Debian packages the tests run for real (Prometheus, promtool) when missing.
	@bash tests/install-deps.sh

.PHONY: mlflow-venv
mlflow-venv: ## Install the pinned MLflow the integration tests run as a real tracking server (a venv of its own, cached).
	@bash tests/mlflow/install.sh >/dev/null

.PHONY: bin
bin: ## Build (or reuse) the pinned control-plane binaries, cached under ~/.cache/mlops-operator.
	@bash tests/cluster/build.sh >/dev/null

# ---------------------------------------------------------------------------------------------
# Local cluster: etcd + kube-apiserver + controller-manager + scheduler + kwok nodes on loopback
# ---------------------------------------------------------------------------------------------
NODE ?= kwok
KUEUE ?=
.PHONY: cluster-up
cluster-up: venv ## Start the local control plane with kwok CPU/GPU nodes (NODE=real adds a real kubelet node, KUEUE=1 Kueue) and the S3 endpoint, seed its bucket; prints KUBECONFIG=<path> last.
	@$(PYTHON) tests/cluster/localcluster.py up --node $(NODE) $(if $(filter 1 yes true,$(KUEUE)),--kueue)
	@$(PY) tests/cluster/seed_s3.py

.PHONY: kueue-bin
kueue-bin: ## Build (or reuse) the pinned Kueue and its CRDs, cached apart from the control plane's binaries.
	@bash tests/cluster/build.sh kueue >/dev/null

.PHONY: kueue-up
kueue-up: ## Add Kueue (the pinned release, built on first use and cached) to the local cluster, starting the cluster if needed.
	@$(PYTHON) tests/cluster/localcluster.py kueue-up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane (keeps its data; `make cluster-wipe` drops it).
	@$(PYTHON) tests/cluster/localcluster.py down

.PHONY: cluster-wipe
cluster-wipe: ## Stop the local control plane and delete its etcd data.
	@$(PYTHON) tests/cluster/localcluster.py wipe

.PHONY: node-runtime
node-runtime: ## Install the real node's runtime from Debian's packages (containerd, runc, CNI plugins, iptables...).
	@bash tests/cluster/node/install-runtime.sh

.PHONY: images
images: ## Build the pause, operator and workloads images without Docker (cached by content); import them into a running real node.
	@$(PYTHON) tests/cluster/realnode.py images

.PHONY: images-gpu
images-gpu: ## Build the GPU-capable workloads image (mlops-workloads-gpu: CUDA torch + XGBoost, several GB); import it into a running real node.
	@$(PYTHON) tests/cluster/realnode.py images workloads-gpu

# ---------------------------------------------------------------------------------------------
# Generated files
# ---------------------------------------------------------------------------------------------
.PHONY: crds
crds: venv bin ## Render crds/*.yaml and the chart's copies from the pydantic models (and the manifests that embed them).
	$(PY) -m mlops_operator.crdgen --out crds --chart-out charts/mlops-operator/crds
	$(PY) examples/install/render.py

.PHONY: manifests
manifests: venv bin ## Render examples/install/{install,monitoring}.yaml and the kustomize base from the chart.
	$(PY) examples/install/render.py

.PHONY: grpc-stubs
grpc-stubs: venv ## Regenerate the committed OIP v2 gRPC modules (serve/grpc_v2/*_pb2*) from their proto.
	$(PY) -m mlops_workloads.serve.grpc_v2.generate

.PHONY: verify
verify: venv bin ## Fail when generated files differ from the models or the chart (like kueue's make verify).
	$(PY) -m mlops_operator.crdgen --out crds --chart-out charts/mlops-operator/crds --check
	$(PY) examples/install/render.py --check
	$(PY) -m mlops_operator.crdgen.estimators --check

# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
.PHONY: lint
lint: venv ## ruff, mypy --strict and the import-layer contracts.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: test-unit
test-unit: venv ## Unit tests only (no cluster).
	$(VENV)/bin/pytest tests/unit -q -n auto

.PHONY: test-e2e
test-e2e: venv bin ## The real-node tier only: a kubelet node, locally built images, pods that really run.
	$(VENV)/bin/pytest tests/e2e -q

.PHONY: test
test: venv bin kueue-bin test-deps mlflow-venv lint verify ## Everything CI runs: lint, generated files, unit, integration (kwok) and e2e (real node) tests.
	$(VENV)/bin/pytest tests/unit -q -n auto
	$(VENV)/bin/pytest tests/integration tests/e2e -q

# ---------------------------------------------------------------------------------------------
# Run it
# ---------------------------------------------------------------------------------------------
.PHONY: run
run: venv ## Run the operator locally against the local cluster.
	KUBECONFIG=$(CACHE)/cluster/admin.kubeconfig $(PY) -m mlops_operator --all-namespaces

.PHONY: demo
demo: venv bin ## Local cluster + operator + the quickstart examples, results printed.
	$(PY) examples/demo.py
