# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv, install the pinned CPU build of PyTorch first (so nothing pulls a
# multi-GB CUDA build), then microsr and its dependencies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
DEMO_DIR ?= demo_out
STAMP := $(VENV)/.installed

.PHONY: install test demo lint docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,bench,export,docs]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/microsr demo $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

# the documentation site (docs/, mkdocs.yml) into site/; strict: a broken link fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache site
