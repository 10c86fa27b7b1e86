# trufl — `make help` lists the targets.
PYTHON ?= python3
PYTEST = $(PYTHON) -m pytest
SWEEP_DIR ?= multirun/toy_table

.DEFAULT_GOAL := help
.PHONY: help install train toy toy-table experiment-lm experiment-sets experiment-graphs experiment-sudoku experiments test test-slow bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: ## install trufl (editable) with test extras; torch pinned to the local CPU wheel
	$(PYTHON) -m pip install --quiet "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[dev]"

train: ## the default job: TRUFL (D=1) + AR-LSTM prior (decoded tokens, spline) on the embedded KJV corpus
	$(PYTHON) train.py

toy: ## TRUFL's toy result: widths learn the category probabilities (one seed, ~15 s)
	$(PYTHON) train.py experiment=toy flow=trufl flow.dim=1 recon_weight=10

toy-table: ## TRUFL vs CatNF on the toy, recon_weight 1 and 10, 3 seeds, as a markdown table
	$(PYTHON) train.py -m experiment=toy flow=trufl,catnf flow.dim=1 recon_weight=1,10 seed=0,1,2 \
		logger=none trainer.enable_progress_bar=false hydra.sweep.dir=$(SWEEP_DIR)
	$(PYTHON) scripts/tables.py $(SWEEP_DIR) --group flow recon_weight --widths --csv $(SWEEP_DIR)/table.csv

experiment-lm: ## language-modelling table (experiments/language_modelling.yaml): 3 flows + the categorical LSTM, curves
	$(PYTHON) scripts/experiment.py experiments/language_modelling.yaml $(ARGS)

experiment-sets: ## sets table (experiments/sets.yaml): 3 flows x 2 tasks, vs the optimum (31 min on 2 cores)
	$(PYTHON) scripts/experiment.py experiments/sets.yaml $(ARGS)

experiment-graphs: ## graph-colouring-tiny table: validity with/without rejection, bits/node (19 min on 2 cores)
	$(PYTHON) scripts/experiment.py experiments/graph_colouring_tiny.yaml $(ARGS)

experiment-sudoku: ## Sudoku table: board validity of the 3 flows (14 min on 2 cores)
	$(PYTHON) scripts/experiment.py experiments/sudoku.yaml $(ARGS)

experiments: experiment-sets experiment-graphs experiment-sudoku ## all three constrained-generation tables

test: ## fast test suite (a few minutes on 2 cores); no tests collected counts as a failure
	$(PYTEST) -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: ## the slow tests (multi-seed learning targets; each experiments/ table at a tiny size)
	$(PYTEST) -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: ## speed benchmarks: step time vs a plain LSTM LM, sampling vs recomputation
	$(PYTHON) scripts/bench.py

clean: ## remove run outputs (not the data cache)
	rm -rf outputs multirun
