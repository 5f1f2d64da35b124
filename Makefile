# prograd_pl — `make help` lists the targets.  Every target sets up .venv itself on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
DATA ?= data
OUT ?= outputs
MODEL ?= mini
LAUNCHER ?= basic
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint demo bench bench-data gpu-check bench-mini pretrain-mini data-mini \
        table-fewshot table-base2new table-dg table-xd experiments-mini clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install the package (editable) with test extras

test: install ## run the fast test suite (offline, CPU)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: install ## run every test, slow ones included
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: install ## ruff lint
	$(VENV)/bin/ruff check src tests benchmarks

demo: install ## zero-shot vs CoOp vs ProGrad on a mini task, 3 seeds, prints a table
	$(PY) -m prograd_pl.sweep base2new --experiment mini_demo --summary mini_textures --data-root $(DATA) --output-root $(OUT)/demo

bench: install ## time and memory of one ProGrad step and one CoCoOp step: plain reference vs ours
	$(PY) benchmarks/bench_cocoop.py
	$(PY) benchmarks/bench_step.py $(BENCH_ARGS)

bench-data: install ## training-loader throughput (decode + augment) at 0/2/4/8 workers vs the model's images/s
	$(PY) benchmarks/bench_data.py

gpu-check: install ## the step benchmark on one GPU (fp32/bf16, RN50/ViT-B/16, 100/1000 classes); CPU fallback
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

bench-mini: install ## base-to-new on every mini task: zero-shot, CoOp, KD, ProGrad, 3 seeds
	$(PY) -m prograd_pl.sweep base2new --model mini --data-root $(DATA) --output-root $(OUT)/bench-mini
	$(PY) -m prograd_pl.mini.headroom --shots 16 --seeds 1,2,3 --out $(OUT)/bench-mini/headroom

pretrain-mini: install ## rebuild the mini CLIP weights (deterministic, ~13 min on 2 idle cores)
	$(PY) -m prograd_pl.mini.pretrain --out src/prograd_pl/assets/prograd_mini.pt

data-mini: install ## generate the mini datasets under DATA
	$(PY) -m prograd_pl.mini.generate --data-root $(DATA)

table-fewshot: install ## few-shot sweep + table (MODEL=, DATA=, LAUNCHER=, EXP=)
	$(PY) -m prograd_pl.sweep fewshot --model $(MODEL) --data-root $(DATA) --output-root $(OUT) --launcher $(LAUNCHER)

table-base2new: install ## base-to-new sweep + table
	$(PY) -m prograd_pl.sweep base2new --model $(MODEL) --data-root $(DATA) --output-root $(OUT) --launcher $(LAUNCHER)

table-dg: install ## domain generalisation sweep + table
	$(PY) -m prograd_pl.sweep dg --model $(MODEL) --data-root $(DATA) --output-root $(OUT) --launcher $(LAUNCHER)

table-xd: install ## cross-dataset sweep + table
	$(PY) -m prograd_pl.sweep xd --model $(MODEL) --data-root $(DATA) --output-root $(OUT) --launcher $(LAUNCHER)

experiments-mini: install ## rerun the four tables on the mini world and refresh experiments/<setting>/mini.{md,png}
	for s in fewshot base2new dg xd; do \
	  $(PY) -m prograd_pl.sweep $$s --model mini --data-root $(DATA) --output-root $(OUT)/experiments-mini/$$s || exit 1; \
	  cp $(OUT)/experiments-mini/$$s/tables/$$s.md experiments/$$s/mini.md; \
	  if [ $$s = fewshot ]; then cp $(OUT)/experiments-mini/$$s/tables/fewshot_curves.png experiments/$$s/mini.png; \
	  else cp $(OUT)/experiments-mini/$$s/tables/$$s.png experiments/$$s/mini.png; fi; \
	done

clean: ## remove outputs (not data, not .venv)
	rm -rf $(OUT) multirun .pytest_cache
