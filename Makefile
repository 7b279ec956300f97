# Two commands for a new user: `make run` (the whole pipeline on simulated data) and `make test`.
# Own logs: `make schema` then `make run`, with DATA=... SPEC=... NAME=... (README, "Your own
# impression logs"; docs/own-logs.md).
# Everything is installed into .venv from the fully pinned requirements.txt, with uv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
UV := .uv/bin/uv

# Default data: the funnel simulator. ROWS / SEED pick the data set; each gets its own folder.
ROWS ?= 300000
SEED ?= 0
SIM_DIR := data/simulated-$(ROWS)-seed$(SEED)

# Every process that imports TensorFlow needs Keras 2 (tf_keras) for TFX 1.16 (docs/design.md#keras).
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

# Your own logs (README, "Your own impression logs"): DATA is their folder, SPEC their feature
# spec, NAME the pipeline (its own metadata, baseline model and serving folder), SCHEMA the schema
# `make schema` writes and runs validate against (default: schema/schema.pbtxt beside SPEC).
DATA ?=
SPEC ?=
NAME ?=
ifneq ($(DATA),)
ifeq ($(NAME),)
$(error DATA needs NAME=<pipeline name>: your logs get their own metadata, baseline model and serving folder)
endif
export FUNNEL_DATA_ROOT := $(abspath $(DATA))
export FUNNEL_PIPELINE_NAME := $(NAME)
endif
ifneq ($(SPEC),)
SCHEMA ?= $(dir $(abspath $(SPEC)))schema/schema.pbtxt
export FUNNEL_FEATURE_SPEC_PATH := $(abspath $(SPEC))
endif
ifneq ($(SCHEMA),)
export FUNNEL_SCHEMA_PATH := $(abspath $(SCHEMA))
endif
export FUNNEL_DATA_ROOT ?= $(CURDIR)/$(SIM_DIR)/examples

# The engine of the Beam components (docs/scaling.md): direct (default), flink or spark; the last
# two start Beam's job server from the jar `make jars` fetches (JDK 17 and Maven needed).
RUNNER ?=
ifneq ($(RUNNER),)
export FUNNEL_BEAM_RUNNER := $(RUNNER)
endif
ENGINE_JARS := $(if $(filter flink spark,$(RUNNER)),jars)

.PHONY: install data run tune validate schema report test test-fast lint bench bench-input bench-mmoe-paper reliability clean jars
install: $(VENV)/.installed

$(UV):
	@echo 'Installing uv $(UV_VERSION) into .uv/'
	@$(PYTHON) -m venv .uv
	@.uv/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode is compiled once at install: every process that imports TFX (each task of the
# Kubeflow conformance test, the TFX CLI) would otherwise compile its sources again wherever
# PYTHONDONTWRITEBYTECODE is set. Quiet (one line, errors only): `make run` on a fresh clone
# prints about 60 lines, not one per installed package.
$(VENV)/.installed: requirements.txt pyproject.toml | $(UV)
	@echo 'Installing the pinned packages of requirements.txt into $(VENV)/ (uv)'
	@test -x $(PY) || $(UV) venv --quiet --seed --python $(PYTHON) $(VENV)
	@$(UV) pip install --quiet --python $(PY) --no-deps --compile-bytecode -r requirements.txt
	@$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@$(UV) pip check --quiet --python $(PY)  # prints the incompatibilities only, if any
	@touch $@

data: $(SIM_DIR)/truth/summary.json

# Beam's Flink and Spark job servers, pinned in pipeline/engines.py, into .cache/jars/ with Maven
# (those missing; RUNNER=flink or spark: that one only).
jars: install
	$(PY) -m pipeline.engines fetch $(filter flink spark,$(RUNNER))

# The simulator's summary (rates, Bayes AUCs) is in its log lines and in truth/summary.json.
$(SIM_DIR)/truth/summary.json: | $(VENV)/.installed
	$(PY) -m simulator --rows $(ROWS) --seed $(SEED) --out $(SIM_DIR) > /dev/null

run: $(if $(DATA),install,data) $(ENGINE_JARS)
	$(PY) -m pipeline.arguments
	$(PY) -m pipeline.local_runner --summary $(if $(DATA),,--truth $(SIM_DIR)/truth/summary.json)

# `make run` with the Tuner on (trainer/search_space.py: its search space and budget,
# FUNNEL_TUNER_* settings): the best trial's settings feed the Trainer.
tune: export FUNNEL_TUNER_ENABLED := true
tune: run

# Checks new data against the schema (input check, statistics, validation, drift) without
# training; data that passes becomes the next run's drift baseline.
validate: $(if $(DATA),install,data) $(ENGINE_JARS)
	$(PY) -m pipeline.arguments
	$(PY) -m pipeline.local_runner --validate-only

schema: install
	@test -n "$(SPEC)" || { echo 'make schema needs DATA=... SPEC=... NAME=...: it must not overwrite the curated schema/schema.pbtxt of the simulated data.'; exit 2; }
	$(PY) -m pipeline.arguments
	$(PY) -m pipeline.local_runner --infer-schema

# The latest evaluation (and bench/results/*.md) as one HTML page: outputs/report/index.html.
report: install
	$(PY) -m report.build

# Two xdist workers, a module at a time each (its module-scoped pipeline runs stay in one process);
# the modules with `slow` tests first (tests/conftest.py). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install kfp-venv backendcheck lint
	$(PY) -m pytest -v --durations=15 -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder \
	  tests

# The linter (ruff; its rules are in pyproject.toml), run by `make test`.
lint: install
	$(PY) -m ruff check .

test-fast: install
	$(PY) -m pytest -q -m 'not slow' tests

# The performance benchmark (bench/speed.py): the pipeline at 10k / 100k / 1M rows against a plain
# script, the Trainer's input against the in-memory ceiling, Beam multi-processing, serving
# latency; prints a table and writes bench/results/speed.md (its run time: bench/README.md).
bench: install
	$(PY) -m bench.speed $(BENCH_ARGS)

# The input check on files shaped to be hard for it, against one read of each (bench/input_check.py):
# prints a table, writes bench/results/input_check.md.
bench-input: install
	$(PY) -m bench.input_check $(BENCH_ARGS)

# The MMoE paper's synthetic experiment: prints a table, writes bench/results/mmoe_paper.md.
bench-mmoe-paper: install
	$(PY) -m bench.mmoe_paper

# The reliability tests (bad data, bad models, faults, serving robustness); the figures (cases
# tried, stopped, handled; models rejected; runs resumed) are printed at the end.
reliability: install
	$(PY) -m pytest -q -p no:warnings -m reliability tests

clean:
	rm -rf outputs data

# The kfp SDK in its own venv (it needs protobuf >= 5; the TFX pins do not allow it): the tests
# load the compiled KFP package with it. Pinned by kubeflow/requirements-kfp.txt.
KFP_VENV := .tool-venv/kfp
.PHONY: kfp-venv
kfp-venv: $(KFP_VENV)/.installed

$(KFP_VENV)/.installed: kubeflow/requirements-kfp.txt | $(UV)
	test -x $(KFP_VENV)/bin/python || $(UV) venv --python $(PYTHON) $(KFP_VENV)
	$(UV) pip install --python $(KFP_VENV)/bin/python --no-deps --compile-bytecode \
	  -r kubeflow/requirements-kfp.txt
	$(UV) pip check --python $(KFP_VENV)/bin/python
	touch $@

# The KFP backend's own Go code (kubeflow/backendcheck, pinned by its go.mod/go.sum) for
# tests/test_kfp_backend.py: its modules are downloaded into Go's module cache once.
.PHONY: backendcheck
backendcheck:
	@command -v go >/dev/null || { echo 'Go is missing: the KFP backend check needs Go >= 1.21 (README, prerequisites; apt-get install golang).'; exit 2; }
	cd kubeflow/backendcheck && go mod download

# Quality benchmark (bench/quality.py): the project's models and DeepCTR's on the funnel simulator.
# DeepCTR gets its own venv, pinned by bench/requirements-deepctr.txt (from the .in beside it).
BENCH_DEEPCTR := .bench-venv/deepctr
.PHONY: bench-deepctr-venv bench-quality
bench-deepctr-venv: $(BENCH_DEEPCTR)/.installed

$(BENCH_DEEPCTR)/.installed: bench/requirements-deepctr.txt | $(UV)
	test -x $(BENCH_DEEPCTR)/bin/python || $(UV) venv --seed --python $(PYTHON) $(BENCH_DEEPCTR)
	$(UV) pip install --python $(BENCH_DEEPCTR)/bin/python --no-deps -r bench/requirements-deepctr.txt
	$(UV) pip check --python $(BENCH_DEEPCTR)/bin/python
	touch $@

# Also runs the MMoE-paper reproduction (bench/mmoe_paper.py), and the Tuner's search at the main
# size (10 trials; its best settings against the defaults, every seed).
bench-quality: install bench-deepctr-venv bench-mmoe-paper
	$(PY) -m bench.quality --tune-trials 10 $(BENCH_ARGS)

# Transfer gain and Pareto front (bench/tradeoffs.py) at 100k rows (run time: bench/README.md): every
# architecture with its single-task baseline on 3 seeds, a click:conversion loss-weight sweep on
# 1 seed. Results: bench/results/transfer_pareto.md and bench/results/pareto.json.
TRADEOFF_SYSTEMS := MMoE + ESMM,shared-bottom + ESMM,PLE + ESMM,cross-stitch + ESMM,MMoE + entity experts + ESMM,AITM,single-task + ESMM,single-task + monotonic,MMoE + ESMM + GradNorm
.PHONY: bench-tradeoffs
bench-tradeoffs: install
	$(PY) -m bench.quality --grid-rows 100000 --curve-rows '' --seeds 3 \
	  --systems '$(TRADEOFF_SYSTEMS)' --loss-weights 4:1,2:1,1:1,1:2,1:4 --sweep-seeds 1 \
	  --out bench/results/transfer_pareto.md $(BENCH_ARGS)
