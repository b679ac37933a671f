# The two commands of the README: `make serve` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck pytest lock openapi docs clean

# `make serve` and `make test` may be started together: the first to need .venv builds it under a lock while the
# other waits, then finds it up to date.
ifdef LOCKED
$(STAMP): pyproject.toml sdk/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ./sdk -e '.[dev]'
	touch $@
else
$(STAMP): pyproject.toml sdk/pyproject.toml requirements.lock
	@flock $(VENV).lock $(MAKE) --no-print-directory LOCKED=1 $@
endif

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

# Rewrite the generated parts of docs/ (the report's fields, the settings table) after a change to the models.
docs: $(STAMP)
	$(BIN)/python -m api.reference

clean:
	rm -rf $(VENV) $(VENV).lock
