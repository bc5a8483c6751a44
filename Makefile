# mt-core developer commands. `make demo` and `make test` work on a fresh machine with Python 3.10+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Editable installs of this flat layout use setuptools' meta path finder, whose build prints an
# "Editable installation ... Please be careful with folders in your working directory" banner
# (an InformationOnly warning that pip >= 25 forwards for local directories) once per project,
# so twice per target. Only that message is filtered, in the build backend's process and pip's;
# every other warning still shows.
PIP_INSTALL = PYTHONWARNINGS="ignore:Editable installation" $(1)/python -m pip install --quiet

# First-party plugins with heavy dependencies are tested in their own venv, so that their pins
# (litellm holds openai below 3) never change the core's environment.
LITELLM_VENV := .venv-litellm

.PHONY: install demo test test-core test-plugins docker-image bench clean

$(STAMP): pyproject.toml plugins/mt-docker/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(call PIP_INSTALL,$(BIN)) -e ".[test,postgres]" -e plugins/mt-docker
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(call PIP_INSTALL,$(BIN)) ./example_tools_pkg  # the plugin path: a tool package, pip-installed as a user would
	$(BIN)/python example.py
	@echo "mt, python and pip of this venv: run '. $(VENV)/bin/activate' in each new shell (or call $(BIN)/mt)"

test: test-core test-plugins

test-core: install
	$(BIN)/python -m pytest

$(LITELLM_VENV)/.installed: pyproject.toml plugins/mt-litellm/pyproject.toml
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(call PIP_INSTALL,$(LITELLM_VENV)/bin) -e ".[test]" -e "plugins/mt-litellm[test]"
	touch $@

test-plugins: $(LITELLM_VENV)/.installed
	$(LITELLM_VENV)/bin/python -m pytest -q plugins/mt-litellm/tests

# The local sandbox base image mt-base:bookworm (debootstrap, no registry), as CI builds it. Only
# on request, and only against an engine that already runs; then `DOCKER_IMAGE=mt-base:bookworm`.
docker-image:
	@docker info >/dev/null 2>&1 || { echo "make docker-image: no Docker engine answers (start one; as root, scripts/docker-setup.sh also installs and starts one)" >&2; exit 1; }
	bash scripts/docker-setup.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .mt .pytest_cache build *.egg-info
