# Flask API stack. `make` lists the targets; `make up` runs the stack, `make test` tests it.
# Every target does the set-up it needs (Docker engine, Compose, base image, virtualenv, certs) and
# skips what is already there, so they work on a fresh machine and cost nothing on a warm one.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The project version lives in one place, the API package.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' services/api/pyproject.toml)
GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The API image's build argument (its api_build_info metric): compose.yaml reads it.
export GIT_REVISION ?= $(GIT_REV)

# sqlite (the default) or postgres: `DATABASE=postgres make up`, or a DATABASE= line in .env.
# PostgreSQL adds compose.postgres.yaml (the db service) to every compose command.
DATABASE ?= $(or $(shell sed -n 's/^DATABASE=//p' .env 2>/dev/null | tail -n 1),sqlite)
IMAGES := flask-stack-api flask-stack-nginx
ifeq ($(DATABASE),sqlite)
COMPOSE := docker compose -f compose.yaml
else ifeq ($(DATABASE),postgres)
COMPOSE := docker compose -f compose.yaml -f compose.postgres.yaml
IMAGES += flask-stack-postgres
else
$(error DATABASE must be sqlite or postgres, not '$(DATABASE)')
endif

# MONITORING=1 (or a MONITORING=1 line in .env) adds compose.monitoring.yaml to every compose
# command: Prometheus, Alertmanager and the nginx exporter (docs/operations.md).
MONITORING ?= $(or $(shell sed -n 's/^MONITORING=//p' .env 2>/dev/null | tail -n 1),0)
ifeq ($(MONITORING),1)
COMPOSE += -f compose.monitoring.yaml
IMAGES += flask-stack-prometheus flask-stack-alertmanager flask-stack-nginx-exporter
else ifneq ($(MONITORING),0)
$(error MONITORING must be 0 or 1, not '$(MONITORING)')
endif
PROMETHEUS_PORT ?= 9090

# nginx must read certs/server.key (mode 0600) through a bind mount: as root, certs.py hands the
# key to the image's uid 10001; as anyone else, nginx runs as that user (still not root).
NGINX_USER ?= $(shell [ "$$(id -u)" = 0 ] && echo 10001:10001 || echo "$$(id -u):$$(id -g)")
export NGINX_USER
# Debian's buildx 0.13 (if present) is too old for Compose's Bake builder; the classic path works.
export COMPOSE_BAKE ?= false

HTTPS_PORT ?= 8443
BASE_URL := https://localhost:$(HTTPS_PORT)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- set-up -------------------------------------------------------------------------------------

.PHONY: bootstrap
bootstrap: ## Provide a Docker engine, Compose v2 and the base image if missing
	@scripts/bootstrap.sh all

# Everything from requirements-dev.lock, hash-checked; --no-deps because the lock is complete and
# overrides one declared cap (requirements-dev.overrides), which pip's resolver would refuse. The
# API then goes in editable, without dependencies (they came from the lock) and without build
# isolation (its build backend, flit_core, came from the lock too).
$(VENV)/.installed: requirements-dev.lock services/api/pyproject.toml
	@echo "==> virtualenv: installing $(VENV) (requirements-dev.lock)"
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e services/api
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtualenv for tests and tools

# Both locks from their inputs: the API's (what the image installs) from its pyproject.toml, then
# the development one from requirements-dev.txt with the API's packages held to the API's lock, so
# the unit tests run on what ships. Pins still allowed by the inputs are kept; LOCK_ARGS=--upgrade
# takes the newest releases instead (or --upgrade-package NAME for one). uv verifies TLS with the
# system's certificate store, as pip does.
LOCK_ARGS ?=
.PHONY: lock
lock: venv ## Refresh both hash locks after editing their inputs (LOCK_ARGS=--upgrade: newest releases)
	cd services/api && UV_NATIVE_TLS=1 $(abspath $(BIN))/uv pip compile -q pyproject.toml \
	  build-requirements.in --universal --python-version 3.13 --generate-hashes $(LOCK_ARGS) \
	  -o requirements.lock
	UV_NATIVE_TLS=1 $(BIN)/uv pip compile -q requirements-dev.txt services/api/pyproject.toml \
	  services/api/build-requirements.in -c services/api/requirements.lock \
	  --override requirements-dev.overrides --universal --python-version 3.11 --generate-hashes \
	  $(LOCK_ARGS) -o requirements-dev.lock

.PHONY: certs
certs: venv ## Write a local CA and a localhost certificate into certs/ (renewed near expiry)
	@$(BIN)/python scripts/certs.py --dir certs --if-needed

# The database password (DATABASE=postgres): random, written once and kept, because the cluster
# keeps the password it was created with. Compose bind-mounts a file secret with its host owner
# and mode (it ignores uid/gid/mode), and two uids read it inside the containers (api 10001,
# db 10002): so the file is 0644, and the 0700 directory keeps every other host user out of it.
secrets/db_password:
	@install -d -m 0700 secrets
	@$(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))' > $@.tmp
	@chmod 0644 $@.tmp && mv $@.tmp $@
	@echo "==> secrets: wrote $@"

.PHONY: secrets
secrets: secrets/db_password ## Write the database password into secrets/ (once; kept after that)

# --- the stack ----------------------------------------------------------------------------------

.PHONY: up
up: bootstrap certs secrets ## Build and start the stack (DATABASE=postgres: on PostgreSQL), wait until healthy
	@echo "==> stack: building and starting"
	@$(COMPOSE) up --detach --build --wait --remove-orphans
	@echo
	@echo "Stack is up: $(BASE_URL)/api/docs"
	@echo "  curl --cacert certs/ca.pem $(BASE_URL)/healthz"
	@if [ "$(MONITORING)" = 1 ]; then \
	  echo "Prometheus: http://127.0.0.1:$(PROMETHEUS_PORT)  (alerts: docs/operations.md)"; fi

# compose.dev.yaml over the same files: the API's source mounted, gunicorn reloading on change.
.PHONY: dev
dev: bootstrap certs secrets ## The same stack with live reload: save a file in services/api/src, the next request runs it
	@echo "==> stack: building and starting with live reload (compose.dev.yaml)"
	@$(COMPOSE) -f compose.dev.yaml up --detach --build --wait --remove-orphans
	@echo
	@echo "Live reload: edits under services/api/src/api reach $(BASE_URL) in a few seconds."
	@echo "  make logs (DEBUG) / make down; make up goes back to the image as built"

.PHONY: seed
seed: venv ## Add a few users and items to the running stack and print their API keys (re-runnable)
	@$(BIN)/python scripts/seed.py --base-url $(BASE_URL) --ca certs/ca.pem

# The tag compose builds (IMAGE_TAG in the environment or .env, as compose reads it; default dev).
IMAGE_TAG ?= $(or $(shell sed -n 's/^IMAGE_TAG=//p' .env 2>/dev/null | tail -n 1),dev)
# Each image's SBOM (CycloneDX JSON: its Debian packages and, in the API's, the Python packages as
# installed), read from the image itself and checked against the schema offline: scripts/sbom.py.
SBOM_DIR ?= build/sbom
.PHONY: images
images: bootstrap venv ## Build the images, tag them with the version and git revision, write their SBOMs to build/sbom/
	@$(COMPOSE) build
	@for image in $(IMAGES); do \
	  docker tag $$image:$(IMAGE_TAG) $$image:$(VERSION); \
	  docker tag $$image:$(IMAGE_TAG) $$image:$(VERSION)-$(GIT_REV); \
	  echo "==> $$image:$(VERSION) $$image:$(VERSION)-$(GIT_REV)"; \
	done
	@$(BIN)/python scripts/sbom.py --out $(SBOM_DIR) $(addsuffix :$(VERSION)-$(GIT_REV),$(IMAGES))

.PHONY: down
down: ## Stop and remove the containers (the data volumes stay)
	@$(COMPOSE) down --remove-orphans

.PHONY: logs
logs: ## Follow the stack's logs
	@$(COMPOSE) logs --follow --tail 100

.PHONY: ps
ps: ## Show the stack's containers
	@$(COMPOSE) ps

# --- Docker Swarm -------------------------------------------------------------------------------

# The swarm the local docker CLI talks to (DOCKER_HOST/DOCKER_CONTEXT: one of its managers).
# Everything host-specific comes from the variables deploy/swarm/stack.yaml names at its top
# (API_IMAGE, NGINX_IMAGE, POSTGRES_IMAGE, SERVER_NAME, DB_PASSWORD_FILE, TLS_CERT_FILE,
# TLS_KEY_FILE; optional ones with defaults) and the node label flask-stack.db=true.
# SWARM_DEPLOY_ARGS adds options, e.g. "--resolve-image never" for images loaded on every node.
# MONITORING=1 deploys deploy/swarm/monitoring.yaml with it (PROMETHEUS_IMAGE, ALERTMANAGER_IMAGE,
# ALERT_WEBHOOK_URL; the node label flask-stack.monitoring=true).
STACK_NAME ?= flask-stack
SWARM_DEPLOY_ARGS ?=

.PHONY: swarm-deploy
swarm-deploy: ## Deploy (or update) the stack on the current swarm: API_IMAGE=... make swarm-deploy (see deploy/swarm/stack.yaml)
	@docker info --format '{{.Swarm.ControlAvailable}}' | grep -qx true || { \
	  echo 'swarm-deploy: the docker CLI must talk to a swarm manager (docker swarm init / docker context use)' >&2; exit 2; }
	@docker node ls --filter node.label=flask-stack.db=true --format '{{.Hostname}}' | grep -q . || { \
	  echo 'swarm-deploy: no node keeps the database: docker node update --label-add flask-stack.db=true <node>' >&2; exit 2; }
	@[ "$(MONITORING)" != 1 ] || docker node ls --filter node.label=flask-stack.monitoring=true \
	  --format '{{.Hostname}}' | grep -q . || { \
	  echo 'swarm-deploy: no node keeps the metrics: docker node update --label-add flask-stack.monitoring=true <node>' >&2; exit 2; }
	@# Process limits set by a variable (API_PIDS_LIMIT=...) come in a file of their own:
	@# deploy/swarm/pids-override.sh says why.
	@pids=$$(mktemp) && trap 'rm -f "$$pids"' EXIT \
	  && deploy/swarm/pids-override.sh api nginx db migrate \
	    $(if $(filter 1,$(MONITORING)),prometheus alertmanager) > "$$pids" \
	  && set -x && docker stack deploy --with-registry-auth $(SWARM_DEPLOY_ARGS) \
	    -c deploy/swarm/stack.yaml $(if $(filter 1,$(MONITORING)),-c deploy/swarm/monitoring.yaml) \
	    $$([ -s "$$pids" ] && echo "-c $$pids") $(STACK_NAME)
	@docker stack services $(STACK_NAME)

.PHONY: swarm-rm
swarm-rm: ## Remove the stack from the swarm (the database volume and the node label stay)
	docker stack rm $(STACK_NAME)

# --- checks -------------------------------------------------------------------------------------

.PHONY: test
test: lint test-rules test-unit test-integration test-adversarial test-swarm ## Lint, alert rules, unit, integration, adversarial and Swarm tests

# promtool runs in the Prometheus image (no host install): the image's build already runs the same
# check, so this builds it (layer cache: seconds) and runs the check again where its report shows.
.PHONY: test-rules
test-rules: bootstrap ## Prometheus config and alert rules: promtool check, and the rules' unit tests
	@echo "==> alert rules: promtool check config, check rules, test rules"
	@docker build -q -t flask-stack-prometheus:test -f monitoring/prometheus/Dockerfile \
	  --build-arg BASE_IMAGE=$${BASE_IMAGE:-debian:trixie-slim} monitoring >/dev/null
	@docker run --rm --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
	  --network none flask-stack-prometheus:test check

.PHONY: test-unit
test-unit: venv ## API unit tests (Flask test client, no Docker), then the resource-swap test
	@echo "==> unit tests"
	@$(BIN)/pytest services/api/tests
	@echo "==> swap test (docs/customize.md on a scratch copy)"
	@$(BIN)/pytest tests/customize

.PHONY: test-integration
test-integration: bootstrap venv ## Build the images and test the stack over HTTPS
	@echo "==> integration tests"
	@$(BIN)/pytest tests/integration

.PHONY: test-adversarial
test-adversarial: bootstrap venv ## Attack the stack: fuzzing, TLS, nginx config, slow clients, faults
	@echo "==> adversarial tests"
	@$(BIN)/pytest tests/adversarial

.PHONY: test-swarm
test-swarm: bootstrap venv ## Deploy deploy/swarm/stack.yaml on a 3-node Docker-in-Docker swarm and prove it
	@echo "==> swarm tests"
	@$(BIN)/pytest tests/swarm

.PHONY: bench
# secrets: BENCH_ARGS="--db postgres" (or both) starts the db service, which needs the password file.
bench: bootstrap venv certs secrets ## Benchmark the stack (BENCH_ARGS="--db postgres|both"); see docs/performance.md
	@$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: migration
migration: venv ## Write a migration for what tables.py adds: make migration m="add notes" (then read it)
	@[ -n "$(m)" ] || { echo 'usage: make migration m="what it changes"' >&2; exit 2; }
	@file=$$($(BIN)/python -m api.migrate --new-revision "$(m)" | sed -n 's/^wrote //p') \
	  && $(BIN)/ruff format -q "$$file" && $(BIN)/ruff check --fix -q "$$file" \
	  && echo "==> $$file (autogenerated: check it, e.g. a rename shows as a drop and an add)"

.PHONY: rename-resource
rename-resource: venv ## Rename the sample resource to start your own: make rename-resource from=items to=notes
	@[ -n "$(from)" ] && [ -n "$(to)" ] || { echo 'usage: make rename-resource from=items to=notes' >&2; exit 2; }
	@$(BIN)/python scripts/rename_resource.py "$(from)" "$(to)"

.PHONY: client
client: venv ## Generate a typed Python client from the OpenAPI document into clients/python/
	@$(BIN)/python scripts/client.py

# zizmor offline (no GitHub API calls) with its default persona; actionlint checks the run: steps
# with the locked shellcheck rather than whichever one is on PATH.
.PHONY: lint
lint: venv ## ruff, mypy --strict, the workflows (actionlint, zizmor), dependabot.yml, the locks
	@echo "==> lint: ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@echo "==> lint: mypy --strict services/api/src"
	@$(BIN)/mypy --config-file services/api/pyproject.toml services/api/src
	@echo "==> lint: workflows and dependabot.yml (actionlint, zizmor, check-jsonschema)"
	@$(BIN)/actionlint -shellcheck $(BIN)/shellcheck
	@$(BIN)/zizmor --offline --no-progress --quiet .
	@$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	@echo "==> lint: locks match their inputs"
	@$(BIN)/python scripts/check_locks.py

.PHONY: format
format: venv ## Apply ruff's fixes and formatting
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

# Always with the PostgreSQL file, whatever DATABASE says: its volume goes together with the
# password in secrets/, or a later run would meet a cluster made with a password now lost.
.PHONY: clean
clean: ## Remove containers, the data volumes, local images, certs, secrets and the virtualenv
	-@docker compose -f compose.yaml -f compose.postgres.yaml -f compose.monitoring.yaml down \
	  --volumes --remove-orphans \
	  --rmi local 2>/dev/null
	@# Leftovers of an integration run that was killed before its own clean-up.
	-@docker ps -aq --filter label=flask-stack.itest-run | xargs -r docker rm -f >/dev/null
	-@docker network prune -f --filter label=flask-stack.itest-run >/dev/null
	-@docker volume prune -f --filter label=flask-stack.itest-run >/dev/null
	rm -rf $(VENV) certs secrets clients .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
