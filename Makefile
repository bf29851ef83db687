# adaptedflow — the two commands of the README:
#   make book   create .venv if missing, install the pinned environment, execute every
#               chapter with papermill whose key changed (notebook, src/adaptedflow,
#               requirements-lock.txt, parameters, mode; the others come from _build/cache),
#               build the HTML into _build/html
#   make test   ruff, unit tests, every chapter at its fast parameters, strict HTML build
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# One BLAS thread unless the caller says otherwise: on a loaded 2-core machine a
# multi-threaded OpenBLAS made small Cholesky factorisations 30-500x slower.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: book book-full seeds seeds-full test unit lint lab install clean help
SEEDS ?= 0-19
FULL_SEEDS ?= 0-3
# Seconds one cell may run (python -m adaptedflow.book --cell-timeout); the publication
# sizes get more: chapter 11's timing cell can pass 900 s on a loaded machine.
CELL_TIMEOUT ?= 900
FULL_CELL_TIMEOUT ?= 1800
# More options for python -m adaptedflow.book, e.g. BOOK_ARGS=--force (re-execute every chapter).
BOOK_ARGS ?=

help:
	@echo "make book       execute the chapters that changed (fast parameters; the others from"
	@echo "                _build/cache) and build _build/html; BOOK_ARGS=--force executes every one"
	@echo "make book-full  the same at the publication parameters (cell limit FULL_CELL_TIMEOUT=$(FULL_CELL_TIMEOUT) s)"
	@echo "make seeds      every chapter at seeds $(SEEDS) (fast): worst margin per claim (not part of make test)"
	@echo "make seeds-full every chapter at seeds $(FULL_SEEDS) at the publication parameters"
	@echo "make test       lint + unit tests + every chapter via papermill + strict HTML build"
	@echo "make unit       unit tests only"
	@echo "make lint       ruff on src/ and tests/ (pyflakes, pycodestyle, isort, bugbear)"
	@echo "make lab        JupyterLab on book/ with the project's kernel (installed on first use)"
	@echo "make clean      remove _build"

$(STAMP): requirements-lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(PY) -m adaptedflow.book --cell-timeout $(CELL_TIMEOUT) $(BOOK_ARGS)

book-full: $(STAMP)
	$(PY) -m adaptedflow.book --full --cell-timeout $(FULL_CELL_TIMEOUT) $(BOOK_ARGS)

seeds: $(STAMP)
	$(PY) -m adaptedflow.book --seeds $(SEEDS) --cell-timeout $(CELL_TIMEOUT)

seeds-full: $(STAMP)
	$(PY) -m adaptedflow.book --full --seeds $(FULL_SEEDS) --cell-timeout $(FULL_CELL_TIMEOUT)

test: lint
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not book"

# The rules live in pyproject.toml ([tool.ruff]); ruff is pinned in requirements-lock.txt.
lint: $(STAMP)
	$(PY) -m ruff check src tests

# JupyterLab is not part of the pinned book environment: it is installed on first use.
# As root (common in containers) JupyterLab refuses to start without --allow-root.
# Open the URL it prints, http://127.0.0.1:8888/lab?token=... (the token is in the URL).
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	$(PY) -c 'import jupyterlab' 2>/dev/null || $(PY) -m pip install --quiet "jupyterlab>=4,<5"
	cd book && $(abspath $(VENV))/bin/jupyter lab $(LAB_ARGS)

clean:
	rm -rf _build
