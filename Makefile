# Every target sets up its own virtual environment; a second run is a fast no-op while pyproject.toml is unchanged.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where no torch is installed and no CUDA GPU is present, put the CPU wheel in first, so that resolving the
# project's `torch>=...` never pulls the multi-GB CUDA build. Override with `make TORCH_CPU_SPEC=... test`.
TORCH_CPU_SPEC ?= torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export WANDB_MODE ?= offline
export WANDB_SILENT := true
CORPUS_CACHE := .cache/chinese-poetry

.PHONY: setup train pretrain test test-slow lint corpus bench report steer-report clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    echo "installing torch (CUDA build: a GPU is present)"; $(PY) -m pip install -q torch; \
	  else \
	    echo "installing $(TORCH_CPU_SPEC) (CPU build)"; $(PY) -m pip install -q "$(TORCH_CPU_SPEC)"; \
	  fi; \
	fi
	$(PY) -m pip install -q -e '.[dev,notebooks,cluster,search]'
	@touch $(STAMP)

train: $(STAMP)
	$(PY) -m poetry_vae.train experiment=make_train
	@# the poems come from the run's best checkpoint by validation ELBO (fine-tuning overfits after an epoch or so)
	$(PY) -m poetry_vae.sample ckpt_path=$$($(PY) -c 'from poetry_vae.runs import best_checkpoint; print(best_checkpoint("outputs/make_train"))') n=8 rhyme=pingshui tone=auto out=outputs/make_train/poems.jsonl

# Pretrain on the five-character blocks (data=wuyan) for PRETRAIN_BUDGET (DD:HH:MM:SS) of CPU time, then
# fine-tune with `python -m poetry_vae.train experiment=finetune_vae` (or poet_finetune with PRETRAIN=poet).
PRETRAIN ?= pretrain_vae
PRETRAIN_BUDGET ?= 00:00:07:00
pretrain: $(STAMP)
	$(PY) -m poetry_vae.train experiment=$(PRETRAIN) trainer.max_time=$(PRETRAIN_BUDGET) trainer.max_epochs=1000 ckpt_path=last

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Rebuilds every shipped corpus (wujue, qijue, wuyan) from chinese-poetry@2.0.1; ~2 minutes (xz at its best ratio).
corpus: $(STAMP)
	@command -v npm >/dev/null || { echo "error: make corpus needs npm (to fetch chinese-poetry@2.0.1): install Node.js"; exit 2; }
	mkdir -p $(CORPUS_CACHE)
	cd $(CORPUS_CACHE) && test -d package || (npm pack chinese-poetry@2.0.1 && tar xzf chinese-poetry-2.0.1.tgz)
	$(PY) -m poetry_vae.data.build_corpus --source $(CORPUS_CACHE)/package --out-dir poetry_vae/resources

# Speed benchmarks: the reference program (benchmarks/reference_program.py) against the project, side by
# side; writes benchmarks/results.json. BENCH_ARGS=--quick for a < 60 s smoke run; --time-to-quality adds a training run.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# Train the standard experiments for REPORT_BUDGET minutes each, evaluate on the test split, write a new page
# docs/results_<REPORT_NAME>/results.md (default name: <YYYY-MM-DD>_<REPORT_BUDGET>min) and add its line to
# docs/index.md. A name whose page exists is refused in one line before anything is trained.
REPORT_BUDGET ?= 15
REPORT_NAME ?=
report: $(STAMP)
	$(PY) scripts/report.py --budget-min $(REPORT_BUDGET) $(if $(REPORT_NAME),--name $(REPORT_NAME))

# Steering through the latent, measured: 500 steered and unsteered poems per theme and way of steering, a judge
# that never reads the markers, fluency under the shipped LM reference; a new page docs/steering/<STEER_NAME>.md.
STEER_NAME ?= $(shell date +%Y-%m-%d)
steer-report: $(STAMP)
	$(PY) scripts/steer_report.py --ckpt poetry_vae/resources/poet.pt --lm poetry_vae/resources/poet_lm.pt --out docs/steering/$(STEER_NAME).md

clean:
	rm -rf outputs multirun wandb lightning_logs .cache/poetry_vae
