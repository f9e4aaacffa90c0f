# One command to run the demo, one to run the tests. Both set everything up from nothing.
PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
export UV_PYTHON := $(shell command -v $(PYTHON))
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup run chat test test-fast lint format bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==0.13.9

$(BIN)/rejoinder: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(BIN)/rejoinder

SHOP_PORT  ?= 8700
SHOP_STATE ?= .shop-backend.json
PORT       ?= 8000

run: setup
	@$(BIN)/rejoinder demo --port $(PORT)

# The example shop's stand-in backend runs beside the chat, on SHOP_PORT or a free port when that one is taken.
chat: setup
	@$(BIN)/python examples/shop/backend.py --port $(SHOP_PORT) --state $(SHOP_STATE) -- \
		$(BIN)/rejoinder chat examples/shop $(if $(RESUME),--resume $(RESUME),--event welcome)

test: setup lint
	$(BIN)/pytest

# The quick tier while working: the engine, expressions, skills, the service and the SQLite store (no servers,
# no browser, no PostgreSQL). `make test` stays the whole suite.
test-fast: setup
	$(BIN)/pytest -q tests/unit tests/service tests/store -k "not postgres"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src/rejoinder

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/turns.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
