# canary: developer entry points.
#
#   make demo     two Lambda rollouts and an AppConfig flag rollout, offline, against emulators
#   make test     ruff, ruff format --check, mypy (strict), schema check, pytest
#   make bench    every bench/*.py script (figures are printed, never asserted)
#   make lint     ruff, ruff format --check, mypy; hadolint on the Dockerfile when on PATH
#   make fmt      ruff check --fix, then ruff format
#   make schema   regenerate config/schema.json from the pydantic models
#   make docker   build the image canary:dev (needs a reachable Docker engine)
#   make clean    remove caches and build artefacts (the virtualenv is left alone)
#
# demo, test, bench, lint, fmt and schema create $(VENV) first when it is missing, and
# reinstall into it when pyproject.toml changes.

PYTHON   ?= python3
VENV     ?= .venv
DOCKER   ?= docker
IMAGE    ?= canary:dev
HADOLINT ?= hadolint

BIN      := $(VENV)/bin
PY       := $(BIN)/python
STAMP    := $(VENV)/.installed
PACKAGES := canary strategies analysis config

.DEFAULT_GOAL := help
.PHONY: help demo test bench lint fmt schema docker clean

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# The virtualenv, as a real file target: created from nothing when missing, reinstalled when
# pyproject.toml is newer than the stamp. pip is quiet but still prints its errors, and a
# failed install leaves no stamp behind, so the next make tries again. --no-compile: Python
# compiles a module when it is first imported, so only what runs gets compiled; this halves
# the install (about 35 s instead of 80 s here).
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing canary[dev] into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@touch $@

# `canary demo` starts moto's server in this process, runs rollout A (healthy, promoted)
# and rollout B (8% errors, rolled back) on a Lambda alias, and beside them rollout C of an
# AppConfig flag (promoted), and exits non-zero unless all came out that way. Offline; steps
# and bakes compressed to seconds.
demo: $(STAMP)
	$(BIN)/canary demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(PY) -m config.schema --check
	$(BIN)/pytest -q

# Runs every bench/*.py in name order (files starting with _ are helpers, not benchmarks);
# stops at the first that fails. No scripts yet is not an error.
bench: $(STAMP)
	@set -e; n=0; \
	for script in bench/*.py; do \
	  [ -f "$$script" ] || continue; \
	  case "$${script##*/}" in _*) continue ;; esac; \
	  n=$$((n + 1)); \
	  echo "== $$script"; \
	  $(PY) "$$script"; \
	done; \
	[ "$$n" -gt 0 ] || echo "bench: no bench/*.py scripts yet; nothing to run"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	@if command -v $(HADOLINT) >/dev/null 2>&1; then \
	  echo "$(HADOLINT) Dockerfile"; $(HADOLINT) Dockerfile; \
	else \
	  echo "lint: $(HADOLINT) is not on PATH; the Dockerfile was not linted"; \
	fi

# Fixes first (they can leave code unformatted), then format. Problems ruff cannot fix are
# printed here and fail `make lint`.
fmt: $(STAMP)
	$(BIN)/ruff check --fix --exit-zero .
	$(BIN)/ruff format .

# Written through a temporary file so a failing generator never truncates the stored schema.
schema: $(STAMP)
	$(PY) -m config.schema > config/schema.json.tmp
	mv config/schema.json.tmp config/schema.json

docker:
	@command -v $(DOCKER) >/dev/null 2>&1 || { \
	  echo "make docker: the '$(DOCKER)' client is not installed; the image was not built" >&2; \
	  exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make docker: no Docker engine is reachable ('$(DOCKER) info' failed: is the daemon" \
	    "running, and DOCKER_HOST right?); the image was not built" >&2; \
	  exit 1; }
	$(DOCKER) build -t $(IMAGE) .

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .coverage htmlcov \
	  config/schema.json.tmp
	find . \( -path ./.git -o -path ./$(VENV) \) -prune -o \
	  -type d -name __pycache__ -prune -exec rm -rf {} +
