# One entry point for developers, CI and workshop instructors. `make help` lists the targets.
# Recipes are POSIX sh that stop at the first failure themselves (`&&`, `set -e`): make 3.81 and
# bash 3.2 (macOS) ignore or lack what they would otherwise rely on (`.SHELLFLAGS`, bash 4).
SHELL := /bin/sh
export CARGO_TARGET_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tracing-lab/target
# The assignment fails when the script does; `eval "$(script)"` alone would not.
TESTENV = testenv=$$(bash tests/env/setup.sh) && eval "$$testenv"
IMAGES = images=$$(bash tests/env/images.sh) && eval "$$images"

.PHONY: help packages test lint build lab prerequisites docker cluster images bundle load install apply reset trace-logs check class clean chart-lint release bench

# Workshop settings (override on the command line: `make lab LAB_NAMESPACE=student-1`).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
CLUSTER ?= tracing-lab
RELEASE ?= tracing-lab
OPERATOR_NAMESPACE ?= tracing-lab-system
LAB_NAMESPACE ?= default
LAB ?= examples/baseline.yaml
OPERATOR_IMAGE ?= tracing-lab-operator:$(VERSION)
SERVICE_IMAGE ?= tracing-lab-service:$(VERSION)
# Extra `docker build` flags, e.g. `--network host` for an engine without a bridge network.
DOCKER_BUILD_FLAGS ?=
CHART := charts/tracing-lab
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

packages: ## the Debian packages building and testing need (cmake, curl headers, redis-server, ...)
	bash tests/env/packages.sh

build: packages ## build every crate and binary
	cargo build --workspace --locked --bins

lint: packages ## formatting and clippy
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: packages lint build chart-lint ## the whole test suite against real servers and a real node (installs them on first run)
	$(TESTENV) && $(IMAGES) && cargo nextest run --workspace --locked --no-fail-fast

# helm notes, on every run, that it follows the chart's CRD symlink into crds/: expected, so hidden.
bench: packages ## benchmarks against real servers, printing their figures (release build)
	cargo build --release --locked --bins
	$(TESTENV) && $(IMAGES) && cargo bench --locked -p tracing-lab-tests

chart-lint: ## helm lint --strict and helm template of the chart, with defaults and every ci/ values file
	$(TESTENV) && err=$$(mktemp) && set -e && for values in "" $(CHART)/ci/*-values.yaml; do \
	  echo "chart: helm lint --strict, helm template with $${values:-defaults}"; \
	  helm lint --strict --quiet $(CHART) $${values:+-f "$$values"} 2>"$$err" \
	    || { cat "$$err" >&2; exit 1; }; \
	  helm template chart-lint $(CHART) --namespace chart-lint $${values:+-f "$$values"} >/dev/null 2>"$$err" \
	    || { cat "$$err" >&2; exit 1; }; \
	  grep -v 'found symbolic link in path' "$$err" >&2 || true; \
	done; rm -f "$$err"

release: ## the Dockerfile's own `cargo build` line, run here without Docker
	line=$$(sed -n 's/^RUN \(cargo build .*\)/\1/p' Dockerfile) && echo "$$line" && $$line

prerequisites: ## check docker (and its CPUs and memory), kind, kubectl and helm, and their versions
	@$(SHELL) scripts/prerequisites.sh

cluster: prerequisites docker ## create the kind cluster from kind-config.yaml unless it exists
	@if kind get clusters 2>/dev/null | grep -qx '$(CLUSTER)'; then \
	  echo "kind cluster $(CLUSTER) exists"; \
	else \
	  kind create cluster --name $(CLUSTER) --config kind-config.yaml; \
	fi
	kubectl config use-context kind-$(CLUSTER) >/dev/null

docker: ## check that the Docker engine answers
	@command -v docker >/dev/null || { echo "missing: docker (install: https://docs.docker.com/engine/install/)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "docker is installed but its daemon does not answer: start Docker, or give this user access to it" >&2; exit 1; }

images: docker ## build the operator and service images (one Dockerfile, one shared builder)
	@# BuildKit would attach a provenance attestation, which kind cannot load (kind#3795).
	attest=$$(docker buildx version >/dev/null 2>&1 && echo --provenance=false || true) && \
	docker build $$attest $(DOCKER_BUILD_FLAGS) --target operator -t $(OPERATOR_IMAGE) . && \
	docker build $$attest $(DOCKER_BUILD_FLAGS) --target service -t $(SERVICE_IMAGE) .

# The images a lab of $(LAB) or of any example runs, so that every exercise's lab starts after one
# `make lab`: ours, and the upstream ones the operator names.
LAB_IMAGES = upstream=$$(for lab in $(LAB) examples/*.yaml; do echo ---; cat "$$lab"; done | \
	  docker run --rm -i $(OPERATOR_IMAGE) images -f - | grep -v '^tracing-lab-service:') && \
	images="$(OPERATOR_IMAGE) $(SERVICE_IMAGE) $$upstream"

bundle: images ## one archive of every image a lab needs (BUNDLE=file), for `make lab BUNDLE=file` where the network is poor
	$(LAB_IMAGES) && $(SHELL) scripts/bundle.sh $(or $(BUNDLE),tracing-lab-images.tar) $$images

load: cluster $(if $(BUNDLE),,images) ## load the lab's images into the kind node: from BUNDLE if given, else built and pulled here
	@# Every upstream image is pulled once and the node gets one archive of the Docker engine's own
	@# platform: a class behind one address does not meet the registry's pull limits.
	@if [ -n "$(BUNDLE)" ]; then \
	  [ -f "$(BUNDLE)" ] || { echo "BUNDLE=$(BUNDLE): no such file (make bundle BUNDLE=$(BUNDLE) writes it)" >&2; exit 1; }; \
	  kind load image-archive --name $(CLUSTER) "$(BUNDLE)"; \
	else \
	  archive=$$(mktemp) && trap 'rm -f "$$archive"' EXIT && $(LAB_IMAGES) && \
	  $(SHELL) scripts/bundle.sh "$$archive" $$images && kind load image-archive --name $(CLUSTER) "$$archive"; \
	fi

install: ## install the CRD and the operator with Helm into the current kubectl context
	@# Helm installs CRDs only on first install; applying it keeps an existing cluster current, and
	@# Helm skips it (helm 4 applies CRDs server-side and would conflict with this apply).
	kubectl apply --server-side --force-conflicts -f crds/tracinglab.yaml
	helm upgrade --install $(RELEASE) $(CHART) --namespace $(OPERATOR_NAMESPACE) --create-namespace --skip-crds \
	  --set image.repository=$(firstword $(subst :, ,$(OPERATOR_IMAGE))) \
	  --set image.tag=$(lastword $(subst :, ,$(OPERATOR_IMAGE))) --wait --timeout 5m

apply: ## apply $(LAB) server-side into $(LAB_NAMESPACE) and wait until it is Ready
	kubectl get namespace $(LAB_NAMESPACE) >/dev/null 2>&1 || kubectl create namespace $(LAB_NAMESPACE)
	kubectl apply --server-side --namespace $(LAB_NAMESPACE) -f $(LAB)
	@# Component by component, from the lab's status, until it is Ready.
	$(SHELL) scripts/wait-for-lab.sh $(LAB_NAMESPACE) 900
	@kubectl get tlab --namespace $(LAB_NAMESPACE)

reset: ## delete $(LAB)'s lab and all it held (traces, Kafka's messages and offsets, Redis), then apply it again
	@# Foreground: kubectl returns once the lab's children and Kafka's claim are gone, so the new
	@# lab starts empty.
	kubectl delete --namespace $(LAB_NAMESPACE) -f $(LAB) --cascade=foreground --wait --ignore-not-found --timeout 5m
	kubectl apply --server-side --namespace $(LAB_NAMESPACE) -f $(LAB)
	$(SHELL) scripts/wait-for-lab.sh $(LAB_NAMESPACE) 900
	@kubectl get tlab --namespace $(LAB_NAMESPACE)

lab: load install apply ## the whole workshop on kind: cluster, images, operator, a Ready lab, then the URLs
	@echo
	@echo "Jaeger UI:   http://localhost:16686"
	@echo "Orders API:  http://localhost:8080"
	@echo "First order: curl -X POST http://localhost:8080/order -H 'Content-Type: application/json' -d '{\"item\": \"test-product\", \"quantity\": 1}'"
	@echo "Then follow docs/workshop.md."

# The operator image's `logs` subcommand, run on kind's Docker network against the API server's
# address inside it, so it works alike on Linux, macOS and Windows.
TRACE ?=
trace-logs: docker ## every log line of the lab in LAB_NAMESPACE that carries TRACE (a trace id from Jaeger), in time order
	@[ -n "$(TRACE)" ] || { echo "TRACE=<trace id> is required: copy it from the trace's page in Jaeger" >&2; exit 1; }
	kubeconfig=$$(mktemp) && trap 'rm -f "$$kubeconfig"' EXIT && \
	kind get kubeconfig --internal --name $(CLUSTER) > "$$kubeconfig" && \
	docker run --rm --network kind --user "$$(id -u):$$(id -g)" -v "$$kubeconfig:/kubeconfig:ro" -e KUBECONFIG=/kubeconfig \
	  $(OPERATOR_IMAGE) logs --namespace $(LAB_NAMESPACE) $(TRACE)

# The operator image's `check` subcommand, run the same way: Jaeger through the API server's proxy.
EXERCISE ?=
check: docker ## whether EXERCISE's outcome (basic-tracing, severe-oom, fault-injection, broken-propagation, synchronous-hop) shows in the lab in LAB_NAMESPACE
	@[ -n "$(EXERCISE)" ] || { echo "EXERCISE=<name> is required: basic-tracing, severe-oom, fault-injection, broken-propagation or synchronous-hop" >&2; exit 1; }
	kubeconfig=$$(mktemp) && trap 'rm -f "$$kubeconfig"' EXIT && \
	kind get kubeconfig --internal --name $(CLUSTER) > "$$kubeconfig" && \
	docker run --rm --network kind --user "$$(id -u):$$(id -g)" -v "$$kubeconfig:/kubeconfig:ro" -e KUBECONFIG=/kubeconfig \
	  $(OPERATOR_IMAGE) check --namespace $(LAB_NAMESPACE) $(EXERCISE)

# A class: `make lab` once by the instructor, then `make class STUDENTS=30`.
STUDENTS ?= 0
CLASS_PREFIX ?= student-
CLASS_FOLDER ?= class
class: ## per student (STUDENTS=N): a namespace, RBAC for the workshop, a quota of one lab, a kubeconfig in class/
	$(SHELL) scripts/class.sh $(STUDENTS) $(CLASS_PREFIX) $(CLASS_FOLDER)

clean: ## delete the kind cluster (and everything in it)
	@if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx '$(CLUSTER)'; then \
	  kind delete cluster --name $(CLUSTER); \
	else \
	  echo "no kind cluster $(CLUSTER)"; \
	fi
