# kube402 — the two commands: `make demo` (the main job) and `make test` (everything, real components).
SHELL := /bin/bash
PY := .venv/bin/python
export GOTOOLCHAIN := local
export GOFLAGS := -modcacherw

.PHONY: demo test unit deps venv node controlplane traefik image contracts check bench bench-controller bench-verifier bench-e2e clean

deps: venv node controlplane traefik

venv: .venv/.installed
.venv/.installed: pyproject.toml
	@test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e ".[dev]"
	@touch $@

node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

controlplane:
	@hack/controlplane/build.sh >/dev/null

# Traefik v3.7.13 from Go modules into ~/.cache/kube402/bin/traefik-v3.7.13 (a stat when cached).
traefik:
	@hack/traefik/build.sh >/dev/null

# The container image as an OCI archive, without a Docker daemon (mmdebstrap + buildah), then run with buildah.
image: venv
	@command -v mmdebstrap >/dev/null && command -v buildah >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq mmdebstrap buildah umoci skopeo >/dev/null; }
	hack/image/smoke.sh "$$(hack/image/build.sh)"

demo: deps
	$(PY) hack/demo.py

test: deps
	@$(PY) -m pytest tests/unit tests/integration tests/e2e; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# The fast tests alone: no control plane, no chain, no Go build.
unit: venv
	$(PY) -m pytest tests/unit -q

contracts: node venv
	$(PY) hack/compile_contracts.py

check: venv
	.venv/bin/ruff check src tests bench hack
	.venv/bin/ruff format --check src tests bench hack
	.venv/bin/mypy src tests bench hack
	.venv/bin/lint-imports

bench: bench-controller bench-verifier bench-e2e

bench-controller: deps
	$(PY) bench/controller.py

bench-verifier: deps
	@command -v wrk >/dev/null && command -v nginx >/dev/null || apt-get install -y -qq nginx wrk >/dev/null
	$(PY) bench/verifier.py

bench-e2e: deps
	$(PY) bench/e2e.py

clean:
	-.venv/bin/kube402 dev down 2>/dev/null
	rm -rf .venv node_modules .kube402
