# mt-core developer commands. `make demo` and `make test` work on a fresh machine with Python 3.10+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# First-party plugins with heavy dependencies are tested in their own venv, so that their pins
# (litellm holds openai below 3) never change the core's environment.
LITELLM_VENV := .venv-litellm

.PHONY: install demo test test-core test-plugins bench clean

$(STAMP): pyproject.toml plugins/mt-docker/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,postgres]" -e plugins/mt-docker
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python example.py

test: test-core test-plugins

test-core: install
	$(BIN)/python -m pytest

$(LITELLM_VENV)/.installed: pyproject.toml plugins/mt-litellm/pyproject.toml
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install --quiet -e ".[test]" -e "plugins/mt-litellm[test]"
	touch $@

test-plugins: $(LITELLM_VENV)/.installed
	$(LITELLM_VENV)/bin/python -m pytest -q plugins/mt-litellm/tests

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .mt .pytest_cache build *.egg-info
