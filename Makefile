# trufl — `make help` lists the targets.
PYTHON ?= python3
PYTEST = $(PYTHON) -m pytest
LAUNCHER ?= local
RESULTS ?= experiments/results
EXPERIMENT_FILES = $(basename $(notdir $(wildcard experiments/*.yaml)))

.DEFAULT_GOAL := help
.PHONY: help install train toy toy-table reproduce results-section baseline-curves experiment-lm experiment-sets experiment-graphs experiment-sudoku experiments test test-slow bench bench-recipes bench-launcher clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: ## install trufl (editable) with test extras; torch pinned to the local CPU wheel
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[dev]"

train: ## the default job: TRUFL (D=1) + AR-LSTM prior (decoded tokens, spline) on the embedded KJV corpus
	$(PYTHON) train.py

toy: ## TRUFL's toy result: widths learn the category probabilities (one seed, ~15 s)
	$(PYTHON) train.py experiment=toy flow=trufl flow.dim=1 recon_weight=10

reproduce: ## one table/figure of experiments/: make reproduce EXP=<name> [LAUNCHER=slurm] [ARGS="seed=0,1,2 ... --resume|--fresh"]
	@if [ -z "$(EXP)" ] || [ ! -f experiments/$(EXP).yaml ]; then \
		echo "EXP must name a file of experiments/: one of $(EXPERIMENT_FILES)" >&2; exit 2; fi
	$(PYTHON) scripts/experiment.py experiments/$(EXP).yaml --launcher $(LAUNCHER) --publish $(RESULTS) $(ARGS)
	$(PYTHON) scripts/results_section.py --results $(RESULTS)

results-section: ## rewrite docs/results.md's generated Results section from experiments/results/
	$(PYTHON) scripts/results_section.py --results $(RESULTS)

toy-table: ## TRUFL vs CatNF on the toy, recon_weight 1 and 10, 3 seeds, with the support animations (= reproduce EXP=toy)
	$(MAKE) reproduce EXP=toy

experiment-lm: ## language-modelling table: 3 flows + the categorical LSTM, curves (= reproduce EXP=language_modelling)
	$(MAKE) reproduce EXP=language_modelling

experiment-sets: ## sets table: 3 flows x 2 tasks x recon_weight 1,10 x 3 seeds (36 runs), vs the optimum (= reproduce EXP=sets)
	$(MAKE) reproduce EXP=sets

experiment-graphs: ## graph-colouring-tiny table: 3 flows x recon_weight 1,10 x 3 seeds (= reproduce EXP=graph_colouring_tiny)
	$(MAKE) reproduce EXP=graph_colouring_tiny

experiment-sudoku: ## Sudoku table: 3 flows x recon_weight 1,10 x 2 seeds (= reproduce EXP=sudoku)
	$(MAKE) reproduce EXP=sudoku

experiments: experiment-sets experiment-graphs experiment-sudoku ## all three constrained-generation tables

C := experiments/results/baseline_curves
baseline-curves: ## the recipes-against-reference plots from the committed curves (docs/baselines.md)
	$(PYTHON) -m trufl.reporting.baseline_curves plot $(C)/lm.png \
	  "CatNF reference code (seed 42)=$(C)/reference_catnf_lm.csv" "CatNF reference code (seed 43)=$(C)/reference_catnf_lm_seed43.csv" \
	  "recipe=catnf_lm, optim=catnf_reference (seed 0)=$(C)/catnf_lm_reference_optimiser.csv" \
	  "recipe=catnf_lm, optim=catnf_reference (seed 1)=$(C)/catnf_lm_reference_optimiser_seed1.csv" \
	  "Argmax reference code=$(C)/reference_argmax_lm.csv" "recipe=argmax_lm, optim=argmax_reference=$(C)/argmax_lm_reference_optimiser.csv"
	$(PYTHON) -m trufl.reporting.baseline_curves plot $(C)/sets.png \
	  "CatNF reference code=$(C)/reference_catnf_sets.csv" "recipe=catnf_sets, optim=catnf_reference=$(C)/catnf_sets_reference_optimiser.csv"

test: ## fast test suite (a few minutes on 2 cores); no tests collected counts as a failure
	$(PYTEST) -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: ## the slow tests (multi-seed learning targets; each experiments/ table at a tiny size)
	$(PYTEST) -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: ## speed/memory table vs a plain LSTM LM (step, full loop, memory, sampling, IWBO, data); writes docs/performance.md's block
	$(PYTHON) scripts/bench.py --write $(ARGS)

bench-recipes: ## the papers' recipes' step time (float32, bf16-mixed) and memory next to their reference code's; writes docs/performance.md's recipes block
	$(PYTHON) scripts/bench_recipes.py --write $(ARGS)

bench-launcher: ## a small sweep with the local launcher (one-thread jobs, as many as cores) against one job with every thread; writes docs/performance.md's launcher block
	$(PYTHON) scripts/bench_launcher.py --write $(ARGS)

clean: ## remove run outputs (not the data cache)
	rm -rf outputs multirun
