# recinc: `make demo` runs the whole pipeline on sample_data/, `make test` runs the test suite.
# Both create .venv and install recinc into it first (CPU torch pinned where no torch is present).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0
RECINC := $(BIN)/recinc
DEMO ?= demo_out
DAYS := 11 12 13 14

.PHONY: install test lint demo bench bench-quality sample-data clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# An unpinned torch would pull a multi-GB CUDA build; install the CPU pin first.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# preprocess -> init on days 1-10 -> for each later day: evaluate (test-then-train), update
# -> recommend. Artefacts land in $(DEMO)/.
demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(RECINC) preprocess sample_data/base.csv -o $(DEMO)/base.parquet
	for d in $(DAYS); do $(RECINC) preprocess sample_data/day$$d.csv -o $(DEMO)/day$$d.parquet || exit $$?; done
	$(RECINC) init $(DEMO)/base.parquet -o $(DEMO)/m10.pt --model mf
	prev=10; for d in $(DAYS); do \
	  echo "== day $$d: evaluate m$$prev.pt on the unseen day, then update it with the day"; \
	  $(RECINC) evaluate $(DEMO)/m$$prev.pt $(DEMO)/day$$d.parquet || exit $$?; \
	  $(RECINC) update $(DEMO)/m$$prev.pt $(DEMO)/day$$d.parquet -o $(DEMO)/m$$d.pt || exit $$?; \
	  prev=$$d; done
	$(RECINC) recommend $(DEMO)/m14.pt --all -k 10 -o $(DEMO)/recs.csv
	$(RECINC) recommend $(DEMO)/m14.pt --users u00001,u00002,new-visitor -k 5

# Streaming benchmark of shared/PROTOCOL.md on ../shared/data, then the speed guides
# (about 12 minutes on 2 cores; not part of the tests).
bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py --out bench_out
	$(BIN)/python bench/speed.py --out bench_out

bench: bench-quality  # all benchmarks; today the quality one

sample-data: $(STAMP)
	$(BIN)/python sample_data/generate.py --out-dir sample_data

clean:
	rm -rf $(VENV) $(DEMO) bench_out *.egg-info
