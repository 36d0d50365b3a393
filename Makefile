# Each target bootstraps .venv from a fresh machine (python3 -m venv + pip install -e ".[test]")
# when it is missing or older than pyproject.toml.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench compare lint

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(PYTHON) launch.py

test: $(STAMP)
	$(PYTHON) -m vae_jax.fid fetch
	$(PYTHON) -m pytest

bench: $(STAMP)
	$(PYTHON) benchmarks/train_throughput.py --config=experiments/celeba.py
	$(PYTHON) benchmarks/train_throughput.py --config=experiments/celeba.py --batch_size=144
	$(PYTHON) benchmarks/train_throughput.py --config=experiments/shapes.py
	$(PYTHON) benchmarks/eval_throughput.py --config=experiments/celeba.py
	$(PYTHON) benchmarks/input_pipeline.py
	$(PYTHON) benchmarks/upsampling.py
	$(PYTHON) benchmarks/layers.py
	$(PYTHON) -m vae_jax.fid fetch
	$(PYTHON) benchmarks/fid_throughput.py

# Train-step time of BASE against the working tree, alternating: run before a performance-sensitive
# change lands (make compare BASE=origin/main MODELS=mnist,shapes,celeba).
BASE ?= HEAD~1
MODELS ?= mnist,shapes
compare: $(STAMP)
	$(PYTHON) benchmarks/compare_commits.py --base=$(BASE) --head=worktree --models=$(MODELS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vae_jax experiments tests launch.py
