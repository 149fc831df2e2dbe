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

.PHONY: install test test-fast lint demo bench bench-preprocess bench-all bench-data bench-replay bench-loo bench-concurrency bench-sessions bench-ranker bench-ranker-sasrec bench-serve bench-distributed sample-data clean

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

# One pytest worker per core (tests/conftest.py: pytest_xdist_auto_num_workers), longest tests
# first; each test runs torch on one thread, so the workers do not fight over the cores.
test: lint
	$(BIN)/python -m pytest -n auto --dist worksteal

# The edit-test loop: units, the model contract and doctests, under a minute (tests/conftest.py
# SLOW_FILES lists what it leaves out). `make test` still runs everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# preprocess -> init on days 1-10 -> for each later day: evaluate (test-then-train), update
# -> recommend; sasrec; a session log with sknn; then a registry with a promotion gate and a
# rollback. Artefacts land in $(DEMO)/.
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
	@echo "== sasrec: the sequential model, with item categories, updated with day 11"
	$(RECINC) init $(DEMO)/base.parquet -o $(DEMO)/s10.pt --model sasrec --item-features category
	$(RECINC) update $(DEMO)/s10.pt $(DEMO)/day11.parquet -o $(DEMO)/s11.pt
	$(RECINC) evaluate $(DEMO)/s11.pt $(DEMO)/day12.parquet
	@echo "== ranker: candidates from five generators ranked by LightGBM, updated with day 11"
	$(RECINC) init $(DEMO)/base.parquet -o $(DEMO)/r10.pt --model ranker
	$(RECINC) update $(DEMO)/r10.pt $(DEMO)/day11.parquet -o $(DEMO)/r11.pt
	$(RECINC) evaluate $(DEMO)/r11.pt $(DEMO)/day12.parquet
	@echo "== session-based cold start: a visitor the model never saw, from their clicks so far"
	$(RECINC) preprocess sample_data/visitor.csv -o $(DEMO)/visitor.parquet
	$(RECINC) recommend $(DEMO)/s11.pt --users visitor -k 5 --history $(DEMO)/visitor.parquet
	@echo "== session logs: anonymous visits, session-kNN on days 1-3, every next click of day 4 scored"
	$(RECINC) preprocess sample_data/sessions.csv -o $(DEMO)/sessions.parquet --user-col session_id
	$(RECINC) split $(DEMO)/sessions.parquet --at 2026-04-04 --train $(DEMO)/sessions-past.parquet --test $(DEMO)/sessions-day4.parquet
	$(RECINC) init $(DEMO)/sessions-past.parquet -o $(DEMO)/sknn.pt --model sknn
	$(RECINC) evaluate $(DEMO)/sknn.pt $(DEMO)/sessions-day4.parquet --protocol session --repeats
	$(RECINC) preprocess sample_data/live_session.csv -o $(DEMO)/live.parquet --user-col session_id
	$(RECINC) recommend $(DEMO)/sknn.pt --users live -k 5 --history $(DEMO)/live.parquet --repeats
	@echo "== production: a model registry, a promotion gate (exit 6 = not promoted), a rollback"
	$(RECINC) update $(DEMO)/m10.pt $(DEMO)/day11.parquet --registry $(DEMO)/models
	$(RECINC) update $(DEMO)/models $(DEMO)/day12.parquet --gate $(DEMO)/day13.parquet --keep 5 || [ $$? -eq 6 ]
	$(RECINC) rollback $(DEMO)/models --to 1
	$(RECINC) recommend $(DEMO)/models --users u00001 -k 5

# Streaming benchmark of shared/PROTOCOL.md on ../shared/data through `recinc replay` (mf and
# sasrec: frozen, incremental, retrained per slice, latest-slice popularity, plus the ablation of
# each incremental policy), then the speed guides. Not part of the tests (about 1.5 hours on 2 cores).
bench-replay: $(STAMP)
	$(BIN)/python bench/replay.py --out bench_out --models mf,sasrec
	$(BIN)/python bench/speed.py --out bench_out

# Leave-one-out protocol (published-results comparison), mf and sasrec with default settings.
bench-loo: $(STAMP)
	$(BIN)/python bench/loo.py --out bench_out

# 1, 2 and 4 copies of the same update at once, before/after the thread policy of issue 19,
# an mf update beside a sasrec init, then the single-job cost of the new policy (about 45 minutes on 2 cores).
bench-concurrency: $(STAMP)
	$(BIN)/python bench/concurrency.py --out bench_out --beside --single

# Session logs: sknn and sasrec under the session protocol on YooChoose, last day held out (about 4 minutes).
bench-sessions: $(STAMP)
	$(BIN)/python bench/sessions.py --out bench_out

# The ranker's ablation (feature groups, candidates, incremental vs retrain) on ML-100K and ML-1M.
bench-ranker: $(STAMP)
	$(BIN)/python bench/ranker.py --out bench_out

# Would a sasrec generator help the ranker? Boosters fit offline with and without its features.
bench-ranker-sasrec: $(STAMP)
	$(BIN)/python bench/ranker_sasrec_offline.py --out bench_out

# recinc serve under load: GET /recommend for mf, sasrec and the default model on ml-1m-users1-1500,
# 1 and 50 clients, beside the same calls in-process (about 5 minutes on 2 cores; localhost only).
bench-serve: $(STAMP)
	$(BIN)/python bench/serve.py --out bench_out

# Training throughput, one process against 2 torchrun ranks, on the small synthetic log (issue 18).
bench-distributed: $(STAMP)
	$(BIN)/python bench/distributed.py --out bench_out

# Synthetic logs at production scale (issue 16): SIZE=tiny|small|medium|large, daily raw partitions.
SIZE ?= small
bench-data: $(STAMP)
	$(BIN)/python bench/synth.py --size $(SIZE) --out bench_data/$(SIZE)

# How recinc scales (issue 16): the small synthetic log (1M events), every figure against a floor
# measured in the same run; writes bench/results/scale_small.{json,md}. SIZE=medium by hand.
# implicit (the peer of `recommend --all`) goes into bench_out/implicit only, never into $(VENV).
IMPLICIT := bench_out/implicit
bench: $(STAMP)
	test -d $(IMPLICIT)/implicit || $(BIN)/python -m pip install -q --no-deps --target $(IMPLICIT) implicit==0.7.3 threadpoolctl tqdm
	$(BIN)/python bench/scale.py --size $(SIZE) --out bench/results --implicit $(IMPLICIT)

# preprocess alone, for the large log (50M events, by hand): make bench-preprocess SIZE=large
bench-preprocess: $(STAMP)
	$(BIN)/python bench/scale.py --size $(SIZE) --out bench/results --only preprocess

bench-all: bench bench-replay bench-loo bench-concurrency bench-sessions bench-ranker bench-ranker-sasrec bench-serve  # every benchmark

sample-data: $(STAMP)
	$(BIN)/python sample_data/generate.py --out-dir sample_data

clean:
	rm -rf $(VENV) $(DEMO) bench_out *.egg-info
