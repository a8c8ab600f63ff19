# Every target installs what it needs first: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ASYNCAPI_PARSER := dev/asyncapi/node_modules/.package-lock.json

.PHONY: help venv run test test-unit lint format schemas bench bench-compare stack-up stack-down clean toxiproxy

help:
	@echo "make run     start Kafka, MongoDB-compatible server, the service and a demo flow"
	@echo "make test    the whole test suite against real local servers"
	@echo "make lint    ruff, ruff format --check, mypy, schema drift, dashboard, runbooks, manifests (make lint-k8s)"
	@echo "make bench   throughput, snapshot-read, stream, many-viewer and analytics benchmarks (prints figures)"
	@echo "make bench-compare  beside the MongoDB sink connector and the raw ceiling (bench/README.md)"
	@echo "make schemas regenerate schemas/ from the code"
	@echo "make toxiproxy  build the fault proxy of the network-fault tests into .cache/tools"

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,local]'
	touch $(INSTALLED)

venv: $(INSTALLED)

# `make run TRACING=1`: the service exports traces to a local Jaeger (dev/jaeger.py).
run: venv $(if $(TRACING),jaeger)
	$(PY) -m dev.run $(if $(TRACING),--tracing)

test: venv jaeger toxiproxy
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

lint: venv $(ASYNCAPI_PARSER)
	$(PY) -m ruff check service dev tests bench
	$(PY) -m ruff format --check service dev tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q tests/unit/test_schemas.py tests/unit/test_openapi.py \
		tests/unit/test_dashboard.py tests/unit/test_runbooks.py
	$(PY) -m openapi_spec_validator schemas/openapi.json
	node dev/asyncapi/validate.mjs schemas/asyncapi.json
	$(MAKE) --no-print-directory lint-k8s

# The official AsyncAPI parser (npm), locked by dev/asyncapi/package-lock.json.
$(ASYNCAPI_PARSER): dev/asyncapi/package-lock.json
	cd dev/asyncapi && npm ci --no-audit --no-fund --ignore-scripts

# Manifests, compose.yaml and the Dockerfile (k8s/lint/check.sh): kustomize renders every
# overlay, kubeconform validates it strictly against the Kubernetes schemas (offline, from
# kubernetes-validate), the kubernetes-models packages validate KEDA and Prometheus Operator
# resources, kube-score reviews it; check-jsonschema (compose spec), hadolint. Tools are
# installed once into .cache/tools from the Go module proxy, PyPI and npm, pinned here.
TOOLS := .cache/tools
KUSTOMIZE_VERSION := v5.8.1
KUBECONFORM_VERSION := v0.8.0
KUBE_SCORE_VERSION := v1.20.0
K8S_VERSIONS := 1.31.0 1.35.0
K8S_TOOLS := $(TOOLS)/bin/kustomize-$(KUSTOMIZE_VERSION) $(TOOLS)/bin/kubeconform-$(KUBECONFORM_VERSION) \
	$(TOOLS)/bin/kube-score-$(KUBE_SCORE_VERSION) $(TOOLS)/venv/.installed $(TOOLS)/node/.installed \
	$(TOOLS)/k8s-schemas/.done $(TOOLS)/bin/crdtypes

.PHONY: k8s-tools lint-k8s lock jaeger
k8s-tools: $(K8S_TOOLS)

lint-k8s: $(K8S_TOOLS)
	K8S_VERSIONS="$(K8S_VERSIONS)" bash k8s/lint/check.sh

# go install puts each binary in $(TOOLS)/gobin; it is kept under a versioned name (a new
# version reinstalls) and linked as the plain name check.sh calls.
$(TOOLS)/bin/%:
	mkdir -p $(TOOLS)/bin $(TOOLS)/gobin
	GOBIN=$(abspath $(TOOLS)/gobin) GOFLAGS=-mod=mod go install $(GO_PACKAGE_$(firstword $(subst -v, ,$*)))@$(lastword $(subst -, ,$*))
	mv $(TOOLS)/gobin/$(firstword $(subst -v, ,$*)) $@
	ln -sf $(notdir $@) $(TOOLS)/bin/$(firstword $(subst -v, ,$*))
GO_PACKAGE_kustomize := sigs.k8s.io/kustomize/kustomize/v5
GO_PACKAGE_kubeconform := github.com/yannh/kubeconform/cmd/kubeconform
GO_PACKAGE_kube-score := github.com/zegl/kube-score/cmd/kube-score

# Strict decoding into the operators' Go API types (MongoDB Community, Prometheus Operator),
# its module versions locked by k8s/lint/crdtypes/go.sum.
$(TOOLS)/bin/crdtypes: k8s/lint/crdtypes/main.go k8s/lint/crdtypes/go.mod k8s/lint/crdtypes/go.sum
	mkdir -p $(TOOLS)/bin
	cd k8s/lint/crdtypes && go build -o $(abspath $@) .

# Jaeger (v2, all-in-one) for the tracing tests and `make run TRACING=1` (dev/jaeger.py runs
# it). `go install <module>/cmd/jaeger@<version>` refuses a module whose go.mod has replace
# directives, as Jaeger's has, so the module is fetched from the Go module proxy and built in
# place, with its own go.mod and go.sum (verified by the go command against the checksum
# database). Built once: minutes of Go compilation on two cores.
JAEGER_VERSION := v1.75.0
JAEGER := $(TOOLS)/bin/jaeger-$(JAEGER_VERSION)
jaeger: $(JAEGER)

$(JAEGER):
	mkdir -p $(TOOLS)/bin
	cd "$$(go mod download -json github.com/jaegertracing/jaeger@$(JAEGER_VERSION) \
		| $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" \
		&& GOFLAGS=-mod=readonly go build -o $(abspath $@).tmp ./cmd/jaeger
	mv $@.tmp $@

# Toxiproxy (server and CLI) for the network-fault scenarios (tests/chaos/test_network_faults.py,
# bench/soak.py): a TCP proxy whose latency, resets, black holes and bandwidth the tests set.
# Its binaries are called `server` and `cli`, so each is built into a GOBIN of its own.
TOXIPROXY_VERSION := v2.5.0
TOXIPROXY := $(TOOLS)/bin/toxiproxy-server-$(TOXIPROXY_VERSION) $(TOOLS)/bin/toxiproxy-cli-$(TOXIPROXY_VERSION)
toxiproxy: $(TOXIPROXY)

$(TOOLS)/bin/toxiproxy-%-$(TOXIPROXY_VERSION):
	mkdir -p $(TOOLS)/bin $(TOOLS)/gobin-toxiproxy-$*
	GOBIN=$(abspath $(TOOLS)/gobin-toxiproxy-$*) GOFLAGS=-mod=mod \
		go install github.com/Shopify/toxiproxy/v2/cmd/$*@$(TOXIPROXY_VERSION)
	mv $(TOOLS)/gobin-toxiproxy-$*/$* $@
	ln -sf $(notdir $@) $(TOOLS)/bin/toxiproxy-$*

$(TOOLS)/venv/.installed: k8s/lint/requirements.txt
	test -x $(TOOLS)/venv/bin/python || $(PYTHON) -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check --require-hashes \
		-r k8s/lint/requirements.txt
	touch $@

$(TOOLS)/node/.installed: k8s/lint/package.json k8s/lint/package-lock.json k8s/lint/crs.mjs
	mkdir -p $(TOOLS)/node
	cp k8s/lint/package.json k8s/lint/package-lock.json k8s/lint/crs.mjs $(TOOLS)/node/
	cd $(TOOLS)/node && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

$(TOOLS)/k8s-schemas/.done: $(TOOLS)/venv/.installed k8s/lint/schemas.py
	$(TOOLS)/venv/bin/python k8s/lint/schemas.py $(TOOLS)/k8s-schemas $(K8S_VERSIONS)
	touch $@

# The image's dependency lock (hashes, for `pip --require-hashes` in the Dockerfile) and the
# lint tools' lock, resolved from PyPI.
lock: $(TOOLS)/venv/.installed
	$(TOOLS)/venv/bin/uv pip compile pyproject.toml requirements-image.in --generate-hashes \
		--python-version 3.11 --python-platform linux --quiet --custom-compile-command "make lock" \
		-o requirements-image.lock
	$(TOOLS)/venv/bin/uv pip compile k8s/lint/requirements.in --generate-hashes \
		--python-version 3.11 --python-platform linux --quiet --custom-compile-command "make lock" \
		-o k8s/lint/requirements.txt

format: venv
	$(PY) -m ruff check --fix service dev tests bench
	$(PY) -m ruff format service dev tests bench

schemas: venv
	$(PY) -m service schemas --out schemas

bench: venv
	$(PY) -m bench
	$(PY) -m bench.streams
	$(PY) -m bench.reads
	$(PY) -m bench.analytics

# Not in CI: the service beside the MongoDB Kafka sink connector and the raw ceiling
# (bench/README.md).
bench-compare: venv
	$(PY) -m bench.compare $(ARGS)

stack-up: venv
	$(PY) -m dev.stack up

stack-down: venv
	$(PY) -m dev.stack down

clean: stack-down
	rm -rf .cache/stack
