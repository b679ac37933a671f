# The two commands of the README: `make serve` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck pytest lock openapi clean

$(STAMP): pyproject.toml sdk/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ./sdk -e '.[dev]'
	touch $@

serve: $(STAMP)
	$(BIN)/python -m api

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Re-pin every dependency to what is installed now (after changing pyproject.toml).
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

# Rewrite api/openapi.json from the app after a change to the contract (tests/api/test_openapi_json.py checks it).
openapi: $(STAMP)
	$(BIN)/python -m api.openapi_json

clean:
	rm -rf $(VENV)
