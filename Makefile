# lnrepro: every figure of "Layer Normalization" (Ba, Kiros, Hinton 2016) with one make target.
# `make help` lists the targets. Everything runs inside .venv (created on first use).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
# Hydra launcher of figure grids and sweeps (configs/hydra/launcher/): empty = one job after
# another in this process; parallel (joblib on this machine), local_submitit, slurm.
LAUNCHER ?=
SWEEP ?=
ARGS ?=
# `make reproduce` runs these (CPU scale unless SCALE=paper), then redraws every figure.
FIGURE_TARGETS := figure2 figure3 figure4 figure5 figure6 figure-lm figure-lm-word figure-cnn
# Datasets: $LNREPRO_DATA, else a data folder beside the checkout when it exists (offline CI),
# else <repo>/data (torchvision downloads MNIST there).
LNREPRO_DATA ?= $(wildcard $(abspath ../shared/data))
ifneq ($(LNREPRO_DATA),)
export LNREPRO_DATA
endif
export HF_HUB_OFFLINE ?= 0
# NORMS=ln,bn,none,wn,rms make figure6: other norms than the figure's own (ln, bn, none)
# CONFIRM=1 make figure6: run and plot exactly the spec's confirmatory_seeds (scales.cpu), from a clean
# checkout only (uncommitted changes are refused: such runs would count as exploratory)
FIG := $(strip $(PY) scripts/figure.py $(if $(NORMS),--norms $(NORMS),) $(if $(CONFIRM),--confirmatory,))
LAUNCH := $(if $(LAUNCHER),--launcher $(LAUNCHER),)

.DEFAULT_GOAL := help
.PHONY: help venv lint test test-fast figure6 figure-lm figure-lm-word figure-cnn figure5 samples figures claims bench clean-runs clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "  variables: SCALE=cpu|paper  LAUNCHER=parallel|basic|local_submitit|slurm  SWEEP=<configs/sweep name>"
	@echo "             ARGS=\"<extra overrides (sweep) or options (compare)>\"  LNREPRO_DATA=<datasets>"
	@echo "             CONFIRM=1 (a figure target: run and plot only its confirmatory_seeds)"

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## create/update the virtual environment from requirements.txt (+ requirements-dev.txt)

lint: venv ## ruff check + ruff format --check of src/ tests/ scripts/ (ruff pinned in requirements-dev.txt)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv ## run the test suite (the README's test command; .ci/run calls it)
	$(PY) -m pytest -q

# processes of the fast lane (pytest-xdist); TEST_JOBS=0 runs it in this process (a loaded machine)
TEST_JOBS ?= 2
test-fast: venv ## the tests not marked slow: no end-to-end runs, no real data (2 processes: 51 s on a quiet 2-core AMD EPYC)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_JOBS)

.PHONY: smoke
smoke: venv ## every CPU-scale experiment (*_cpu*) for 5 updates (debug=smoke), 2 at a time: a line each + totals; absent data: skipped
	$(PY) scripts/smoke.py $(ARGS)

.PHONY: golden mutation
golden: venv ## record this CPU's golden runs (ONLY="case ..." for some); re-record only in a commit that says why numbers move
	$(PY) scripts/golden.py record $(if $(ONLY),--only $(ONLY),)

mutation: venv ## mutation testing of the norms, the recurrent core and the losses -> results/mutation.md (not in CI)
	$(PY) scripts/mutation.py

figure6: venv ## Figure 6, permutation-invariant MNIST: ln/bn/none x batch 128/4; 2 runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

figure-lm: venv ## char-level PTB: LSTM vs LN-LSTM vs BN-LSTM, bpc vs updates and time; 2 runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

figure-lm-word: venv ## word-level PTB (Zaremba's small/medium LSTM): ln/bn/none, perplexity; 2 runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

figure-cnn: venv ## Sec. 6.7 convnet on MNIST: ln/bn/none x batch 128/4; 2 runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

.PHONY: figure2 figure2-gain
figure2: venv ## Figure 2, attentive reader on cloze QA: LSTM / BN-LSTM / LN-LSTM x 3 seeds, val error vs updates; 2 runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

figure2-gain: venv ## Sec. 6.2 ablation: LN-LSTM reader with LN gains initialised to 1.0 vs 0.1, 3 seeds (CPU scale)

.PHONY: figure3 eval eval-skip
figure3: venv ## Figure 3 + Table 3, skip-thoughts: LN-GRU vs GRU, SentEval vs updates; both runs in parallel unless LAUNCHER=... (SCALE=cpu|paper)

eval: venv ## evaluate a checkpoint of any experiment: CKPT=<run>/checkpoints/last.pt|best.pt [SPLIT=val,test] [ARGS="--json F key=value"]
	@test -n "$(CKPT)" || { echo "error: give CKPT=<run dir>/checkpoints/last.pt (or best.pt)" >&2; exit 2; }
	$(PY) scripts/eval.py $(CKPT) $(if $(SPLIT),--split $(SPLIT),) $(ARGS)

eval-skip: venv ## SentEval alone of a skip-thoughts checkpoint (make eval SPLIT=none): CKPT=... [ARGS="--tasks MR SICK"]
	@test -n "$(CKPT)" || { echo "error: give CKPT=<run dir>/checkpoints/last.pt" >&2; exit 2; }
	$(PY) scripts/eval_skip.py $(CKPT) $(ARGS)

.PHONY: figure4
figure4: venv ## Figure 4, DRAW on binarized MNIST: LN vs baseline test bound (3 seeds, BN 1), + samples (SCALE=cpu|paper)

figure5: venv ## Figure 5, handwriting synthesis (IAM-OnDB): LN-LSTM vs LSTM (3 seeds; BN 1), NLL vs updates (SCALE=cpu|paper)

samples: venv ## handwriting from the figure5 runs -> results/handwriting_samples.png (TEXT="...", BIAS=1.0)
	$(PY) scripts/sample_handwriting.py --scale $(SCALE) --bias $(or $(BIAS),1.0) $(if $(TEXT),--text "$(TEXT)",)

# ---- figure targets: each runs its grid (experiments/<spec>.yaml) with scripts/figure.py, then
# plots it; the `## help` lines above declare them, FIGURE_RECIPE below writes every recipe.
# Per target (all optional): fig.spec.T (the experiments file, required), fig.scale.T (default
# $(SCALE)), fig.launch.T (default $(LAUNCH)), fig.before.T / fig.after.T (commands run before
# the grid / after the plot).
fig.spec.figure2 := figure2_reader
fig.spec.figure2-gain := figure2_reader_gain
fig.spec.figure3 := figure3_skip_thoughts
fig.spec.figure4 := figure4_draw
fig.spec.figure5 := figure5_handwriting
fig.spec.figure6 := figure6_pi_mnist
fig.spec.figure-lm := lm_ptb_char
fig.spec.figure-lm-word := lm_ptb_word
fig.spec.figure-cnn := cnn_mnist
# Every figure grid runs 2 jobs in parallel (one thread each: configs/hydra/launcher/parallel.yaml)
# unless LAUNCHER=... names another launcher: small per-step ops gain little from a second thread
# (word PTB small, AMD EPYC: 8.7 updates/s at 1 thread, 14.3 at 2, so 2 lanes do 17.4 a second;
# pi-MNIST: results/bench.md, "Figure 6 runs"). LAUNCHER=basic runs one job after another in
# one process, with every core.
PARALLEL_LAUNCH = --launcher $(or $(LAUNCHER),parallel)
fig.launch.figure6 = $(PARALLEL_LAUNCH)
fig.launch.figure-lm = $(PARALLEL_LAUNCH)
fig.launch.figure-cnn = $(PARALLEL_LAUNCH)
fig.launch.figure2 = $(PARALLEL_LAUNCH)
fig.launch.figure2-gain = $(PARALLEL_LAUNCH)
fig.launch.figure3 = $(PARALLEL_LAUNCH)
fig.launch.figure4 = $(PARALLEL_LAUNCH)
fig.launch.figure5 = $(PARALLEL_LAUNCH)
fig.launch.figure-lm-word = $(PARALLEL_LAUNCH)
fig.scale.figure2-gain := cpu
fig.before.figure2 = $(if $(filter cpu,$(SCALE)),$(PY) scripts/reader_data.py --full,)
fig.after.figure3 = $(PY) scripts/table3.py --scale $(SCALE)
fig.after.figure4 = $(PY) scripts/sample_draw.py --scale $(SCALE)
FIGURES := $(patsubst fig.spec.%,%,$(filter fig.spec.%,$(.VARIABLES)))

define FIGURE_RECIPE
$(1):
	$$(fig.before.$(1))
	$$(FIG) run experiments/$$(fig.spec.$(1)).yaml --scale $$(or $$(fig.scale.$(1)),$$(SCALE)) $$(or $$(fig.launch.$(1)),$$(LAUNCH))
	$$(FIG) plot experiments/$$(fig.spec.$(1)).yaml --scale $$(or $$(fig.scale.$(1)),$$(SCALE))
	$$(fig.after.$(1))
endef
$(foreach t,$(FIGURES),$(eval $(call FIGURE_RECIPE,$(t))))

.PHONY: table2
table2: venv ## Table 2 + Figure 1, order embeddings on COCO (Sec. 6.1): LN-GRU vs GRU; needs the COCO features in LNREPRO_DATA/coco/ (SCALE=cpu|paper)
	$(PY) scripts/table2.py --check-data
	$(FIG) run experiments/table2_order_embeddings.yaml --scale $(SCALE) $(LAUNCH)
	$(PY) scripts/table2.py --scale $(SCALE)

figures: venv ## redraw every figure (no training): from its run folders, else from its committed CSVs (figure.py draw); then `make claims`
	@for f in experiments/*.yaml; do $(FIG) plot $$f --scale $(SCALE) || $(FIG) draw $$f --scale $(SCALE) || true; done
	@$(PY) scripts/table3.py --scale $(SCALE) || true
	$(PY) scripts/claims.py --readme
	-$(PY) scripts/figure.py check  # lists the committed figures the code would not draw as they are

claims: venv ## the paper's claims checked from results/ -> results/claims.md, claims.csv, README table, notes' generated blocks
	$(PY) scripts/claims.py --readme

.PHONY: claims-check
claims-check: venv ## writes nothing; fails with one line per claims file, README block or notes block that results/ disagrees with
	$(PY) scripts/claims.py --check

.PHONY: sweep compare reproduce
sweep: venv ## a sweep from configs/sweep/<SWEEP>.yaml -> outputs/sweeps/<SWEEP>/ (LAUNCHER=..., ARGS="key=value ...")
	@test -n "$(SWEEP)" || { echo "error: give SWEEP=<name>, one of: $$(ls configs/sweep | sed 's/\.yaml$$//' | tr '\n' ' ')" >&2; exit 2; }
	$(PY) -m lnrepro.train sweep=$(SWEEP) $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER),) $(ARGS)

compare: venv ## table (and plot) of logged runs: ARGS="[dirs] --experiment/--group/--norm/--tag/--where --plot M --out F"
	$(PY) scripts/compare_runs.py $(ARGS)

reproduce: venv ## run every figure in FIGURE_TARGETS (one after another), then redraw all figures
	@for t in $(FIGURE_TARGETS); do $(MAKE) --no-print-directory $$t || exit $$?; done
	$(MAKE) --no-print-directory figures

.PHONY: scorecard
# A norm through LN's benchmarks beside LN, BN and none (experiments/scorecard/suite.yaml,
# docs/scorecard.md). NORM: a config of configs/norm/ (rms, wn) or module.Class; examples/norms
# is on PYTHONPATH (NORM=dyt.DyT), a folder of your own joins it: PYTHONPATH=<dir> make scorecard ...
SCORECARD_PATH = $(CURDIR)/examples/norms$(if $(PYTHONPATH),:$(PYTHONPATH),)
scorecard: venv ## a norm through LN's benchmarks beside LN, BN, none: NORM=<config or module.Class> [TIER=quick|full] [SEEDS=11,12,13] [NAME=...] -> results/scorecards/<name>.md, .png
	@test -n "$(NORM)" || { echo "error: give NORM=<a configs/norm name or module.Class>, e.g. NORM=dyt.DyT" >&2; exit 2; }
	PYTHONPATH=$(SCORECARD_PATH) $(PY) scripts/scorecard.py --norm $(NORM) --tier $(or $(TIER),quick) $(if $(SEEDS),--seeds $(SEEDS),) $(if $(NAME),--name $(NAME),) $(if $(LAUNCHER),--launcher $(LAUNCHER),) $(ARGS)

bench: venv ## speed benchmarks -> results/bench.md (MLP) and results/bench_rnn.md (LSTM/GRU)
	$(PY) scripts/bench.py
	$(PY) scripts/bench_rnn.py --compiled

.PHONY: gpu-check
# The venv's python when there is one, else python3: a bare GPU machine needs no venv, only torch,
# numpy, hydra-core and tqdm (the configs are composed by Hydra and built by lnrepro.train).
GPU_CHECK_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check: ## GPU acceptance check of every paper-scale experiment -> results/gpu_check.md (~7 min on one GPU; CPU half only without one)
	$(GPU_CHECK_PY) scripts/gpu_check.py $(ARGS)

clean-runs: ## delete outputs/ (all runs, checkpoints and W&B files)
	rm -rf outputs

clean: ## delete the virtual environment and caches
	rm -rf $(VENV) .pytest_cache src/*.egg-info
