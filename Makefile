# One command to set up and run the default pipeline, one to set up and run the tests.
#   make run    # venv + install + `dvc repro` on the embedded default dataset + summary
#   make test   # venv + install + the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: setup run test lint bench clean

$(BIN)/alignrec-data: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q -c constraints.txt --no-deps torchscale==0.3.0 fairscale==0.4.13
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.endswith('+cpu') else 'torch ' + v + ' is not the CPU build: remove .venv and rerun make')"
	touch $@

setup: $(BIN)/alignrec-data

run: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	$(BIN)/python pipelines/summary.py --data-dir data --params params.yaml

test: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) data .dvc/cache
