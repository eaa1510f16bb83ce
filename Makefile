# Set-up, demo and tests. Every target works from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo
DEMO_PORT ?= 8080

.PHONY: install demo demo-stop test services lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "assay needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install
	DEMO_DIR=$(DEMO_DIR) DEMO_PORT=$(DEMO_PORT) BIN=$(BIN) deploy/local/demo.sh

demo-stop:
	DEMO_DIR=$(DEMO_DIR) deploy/local/demo.sh stop

services:
	deploy/local/ensure-services.sh

test: install services
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check client server tests bench examples
	$(BIN)/ruff format --check client server tests bench examples
