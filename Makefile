# Set-up, demo and tests. Every target works from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo
DEMO_PORT ?= 8080

WEB := client/web
WEB_BUNDLE := server/assay_server/static/app.js
WEB_SOURCES := $(wildcard $(WEB)/src/*) $(WEB)/build.mjs $(WEB)/tsconfig.json

.PHONY: install web demo demo-stop test services chromium lint

install: $(VENV)/.installed web

# The browser app: TypeScript bundled by esbuild into server/assay_server/static/,
# which the server serves and the wheel includes. Needs Node.js 18 or newer.
web: $(WEB_BUNDLE)

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@command -v npm > /dev/null || deploy/local/ensure-node.sh
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUNDLE): $(WEB)/node_modules/.package-lock.json $(WEB_SOURCES)
	cd $(WEB) && npx tsc --noEmit -p . && node build.mjs

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
	deploy/local/ensure-deploy-tools.sh

# The browser tests drive Debian's Chromium at /usr/bin/chromium; Playwright never
# downloads a browser of its own.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	else \
		echo "missing /usr/bin/chromium: install it (Debian: sudo apt-get install chromium);" \
			"without it the browser tests are skipped, or fail when CI is set" >&2; \
	fi

test: install services chromium
	$(BIN)/pytest

lint: install
	$(BIN)/pip install --quiet -e '.[test,dev]'
	$(BIN)/ruff check client server tests bench examples
	$(BIN)/ruff format --check client server tests bench examples
	cd $(WEB) && npx prettier --check src build.mjs
