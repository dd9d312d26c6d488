# Everything runs from the project's own virtualenv, created and filled by `make venv`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv sam gateway test lint typecheck validate security unit integration e2e infra tooling pytest run invoke up down dlq bench package deploy clean

venv: $(STAMP)

# Then the project itself, editable (pyproject.toml): the function in src/ and the tool packages (ops,
# devstack, bench, tools) import from any working directory, `python -m ops.dlq` and the rest included.
$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	mkdir -p build  # setup.cfg puts the egg-info there; a fresh clone has no build/ yet
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

# The AWS SAM CLI (requirements-sam.txt) in a virtualenv of its own: it pins boto3 and its own lint
# tools, which would clash with the runtime pins in src/requirements.txt. Telemetry off for our calls.
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed

sam: $(SAM_STAMP)

$(SAM_STAMP): requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	touch $(SAM_STAMP)

# The real open-source Portkey gateway (Node), pinned in tools/gateway, for the end-to-end tests; npm ci's
# postinstall (patch-package) applies tools/gateway/patches/ (tools/gateway/README.md).
GATEWAY_STAMP := tools/gateway/node_modules/.package-lock.json

gateway: $(GATEWAY_STAMP)

$(GATEWAY_STAMP): tools/gateway/package.json tools/gateway/package-lock.json $(wildcard tools/gateway/patches/*.patch)
	npm ci --prefix tools/gateway --no-audit --no-fund || { rm -f $(GATEWAY_STAMP); exit 1; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# The project's own checks (cfn-lint, SAM translation, cfn-lint on the translation), then what a user's
# `sam validate` does with samconfig.toml (lint = true).
validate: venv sam
	$(BIN)/python tools/validate_template.py
	$(SAM) validate

# bandit: no high-severity finding in the shipped code. tools/audit.py runs pip-audit on the runtime
# requirements as pip resolves them and says how many packages it audited: fails on a known
# vulnerability; a package it cannot look up (no route to its vulnerability service) is listed as
# NOT audited: printed, not failed on, unless AUDIT_STRICT=1.
security: venv
	$(BIN)/bandit --quiet --recursive src --severity-level high
	$(BIN)/python tools/audit.py $(if $(AUDIT_STRICT),--strict)

# pytest-xdist: PYTEST_WORKERS worker processes (0: one process, no xdist), each with its own moto
# server, stand-ins and temporary directories on ports the kernel picks. --dist loadgroup keeps each
# xdist_group (the soaks; the gateway, artifact and package modules) on one worker.
PYTEST_WORKERS ?= 4
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup

# Test tiers (tests/<tier>/): unit needs no servers and no Node; integration runs moto and the Portkey
# stand-in on loopback; e2e adds the real gateway (Node), the local runner and the packaged artifact;
# infra checks the template and packaging; tooling tests the test tools themselves (stand-in, soak, DLQ tool).
unit: venv
	$(BIN)/python -m pytest tests/unit

integration: venv
	$(BIN)/python -m pytest $(XDIST) tests/integration

e2e: venv gateway
	$(BIN)/python -m pytest $(XDIST) tests/e2e

infra: venv sam
	$(BIN)/python -m pytest $(XDIST) tests/infra

tooling: venv gateway
	$(BIN)/python -m pytest $(XDIST) tests/tooling

# Every tier in one pytest run, on PYTEST_WORKERS workers.
pytest: venv sam gateway
	$(BIN)/python -m pytest $(XDIST)

# The README's test command: lint, types, the template checks, the security scans and the whole suite.
test: lint typecheck validate security pytest

run: venv
	$(BIN)/python -m devstack.run $(ARGS)

# One event file through the packaged function under AWS's runtime interface client, with moto and
# the Portkey stand-in (ARGS=--live: a real Portkey): make invoke EVENT=events/sqs-batch.json
invoke: venv
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=path/to/event.json [ARGS=--live]" >&2; exit 2; }
	$(BIN)/python -m devstack.invoke $(EVENT) $(ARGS)

# A local stack left running for rehearsing the DLQ tool: moto (the template's queues, secret, bus and
# rule), the Portkey stand-in and the function behind a poller. `make up` prints the variables to
# export (also written to build/devstack/env.sh); `make down` stops it.
up: venv
	$(BIN)/python -m devstack.up start

down: venv
	$(BIN)/python -m devstack.up stop

# The dead-letter queue tool (docs/operations.md): make dlq ARGS="inspect", make dlq ARGS="replay --dry-run".
dlq: venv
	$(BIN)/python -m ops.dlq $(ARGS)

# The deployable function for Lambda's python3.13 runtime, built without Docker or a local Python 3.13:
# build/package/ (what /var/task holds), build/package.zip, and, once the zip is checked complete for
# the runtime (the handler and every dependency), build/deploy/template.yaml pointing at it, which
# `sam deploy` deploys (samconfig.toml). ARCH=arm64 builds for Graviton (and sets Architectures).
ARCH ?= x86_64

package: venv
	$(BIN)/python tools/package.py --arch $(ARCH)

# Build, check and deploy with the project's own SAM CLI (.venv-sam); ARGS go to `sam deploy`.
deploy: package sam
	$(SAM) deploy $(ARGS)

# Not part of `make test`: installs the benchmark-only extras (Portkey SDK, matplotlib), then runs it.
bench: venv
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam build
