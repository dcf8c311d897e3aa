# One command per chore. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# to get PyTorch's CPU wheel outside this environment.
PIP_ARGS ?=
EVAL_FILE ?= ../shared/eval/squad-v1.1-dev-a.json
# The reader's answer scores count only on articles it never trained on.
EVAL_ARGS ?= --questions-from heldout --unindexed 0.2
LINT_PATHS := $(wildcard qa tests app.py training bench scripts)
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help
.PHONY: help install run build test test-fast lint format typecheck eval eval-chat bench bench-1m train-reader train-reader-squad train-embedder browser clean

help: ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(PIP_ARGS) "torch==2.13.0" -e ".[dev]"
	touch $@

install: $(BIN)/.installed ## create .venv and install qa with its dependencies (CPU torch)

run: install ## build the index if needed, then start the chat app on http://127.0.0.1:7860
	$(BIN)/python app.py

build: install ## build or update the index from seeds/
	$(BIN)/qa build

test: install ## run the whole test suite (unit, model, app, browser when Chromium is installed)
	$(BIN)/python -m pytest -q

test-fast: install ## unit tests only (fake embedder, no models)
	$(BIN)/python -m pytest -q -m "not model and not browser and not slow"

lint: install ## ruff and mypy
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

format: install ## format the code
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

eval: install ## measure retrieval, answers, abstention on SQuAD (EVAL_FILE=..., EVAL_ARGS=...)
	$(BIN)/qa eval $(EVAL_FILE) $(EVAL_ARGS) --out artifacts/eval

eval-chat: install ## turn accuracy of first turns and follow-ups over eval/conversations*.json (~40 s)
	$(BIN)/qa eval-chat eval/conversations.json -q
	$(BIN)/qa eval-chat eval/conversations-heldout.json -q

bench: install ## benchmarks, everything but the 1M-chunk case (see bench/README.md; ~7 min)
	$(BIN)/python -m bench.run

bench-1m: install ## the 1M-chunk scale benchmark (~25 min on 2 cores)
	$(BIN)/python -m bench.run --only scale --scale 1m --name scale-1m

train-reader: install ## retrain the starting reader (the shipped one continues it) on ../shared/eval (~7 min on one GPU, ~30 h on 2 cores)
	PYTHON=$(BIN)/python training/distil.sh artifacts/reader artifacts/distil
	@echo "trained into artifacts/reader; recalibrate it with: $(BIN)/python -m training.calibrate --out artifacts/reader"

train-reader-squad: install ## two more passes over ../shared/train's questions from the shipped reader with the shipped run's recipe (a same-article no-answer paragraph for half of them; docs/experiments.md); ~6 min on one GPU, ~7 h on 2 cores; TRAIN_UNTIL=HH:MM stops it then (LR annealed), MAX_STEPS=7637 as shipped; resumable
	$(BIN)/python -m training.reader --out artifacts/reader-squad --work artifacts/reader-squad-work --resume \
	  --train-file ../shared/train/squad-v1.1-train.json --article-negatives 0.5 --distractors 0 \
	  --init qa/models/reader --lr 3e-5 --warmup 0.01 --epochs 2 --seed 45 --log-every 50 \
	  --eval-at-questions 5000,20000,50000,80000 $(if $(TRAIN_UNTIL),--train-until $(TRAIN_UNTIL)) \
	  $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))
	@echo "compare with: $(BIN)/python -m training.compare qa/models/reader artifacts/reader-squad"

train-embedder: install ## retrain the retrieval embedder on ../shared/eval (~35 min on 2 cores)
	$(BIN)/python -m training.embedder --out artifacts/embedder

browser: ## install Debian's Chromium and ChromeDriver for the browser tests (needs root)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

clean: ## remove caches (keeps .venv and index/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache artifacts
