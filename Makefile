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

SHOP_PORT ?= 8700
PORT      ?= 8000
SHOP_ENV  := SHOP_BACKEND=http://127.0.0.1:$(SHOP_PORT)
# The example shop's stand-in backend runs beside the bot for as long as the command in $(1) runs.
with_shop_backend = $(BIN)/python examples/shop/backend.py --port $(SHOP_PORT) --state .shop-backend.json & backend=$$!; \
	trap "kill $$backend 2>/dev/null" EXIT INT TERM; sleep 0.5; export $(SHOP_ENV); $(1)

run: setup
	@$(BIN)/rejoinder demo --port $(PORT)

chat: setup
	@$(call with_shop_backend,$(BIN)/rejoinder chat examples/shop $(if $(RESUME),--resume $(RESUME),--event welcome))

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
