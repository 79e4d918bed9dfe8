# Loom: `make run` starts Loom in embedded mode; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# The JavaScript the tests drive: the graphql-ws client, the graphql-http spec audit and
# Playwright for GraphiQL in Chromium (needs Node.js 20+ and npm; without them those tests
# are skipped, except in CI).
JS_CLIENT := tests/js/node_modules/.installed

.PHONY: run test lint format schema clean

# The server's dependencies only: what `make run` needs.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Loom needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@# Venvs set up before the test plugin stopped being installed still have it.
	@$(BIN)/python -m pip uninstall --quiet --yes loom-test-plugin 2>/dev/null || true
	@touch $(STAMP)

# Test, lint and type-check tools on top. The test plugin (tests/plugin_pkg) is not installed:
# the tests find it on their path, so a server of this venv never offers it.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(DEV_STAMP)

$(JS_CLIENT): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/js --no-audit --no-fund --silent && touch $@; \
	else \
		echo "npm not found: the JavaScript tests will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/loom serve

test: $(DEV_STAMP) $(JS_CLIENT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

schema: $(STAMP)
	$(BIN)/loom export-schema

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
