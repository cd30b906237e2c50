# One venv for everything. torch==2.13.0 is installed first: it is a CPU wheel here, and a plain
# `torch` requirement would otherwise pull a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint format type benchmark clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install  ## short InfluencePPO-vs-PPO training with TensorBoard logs in runs/quickstart
	$(PY) examples/compare.py

test: install  ## the whole test suite (CPU, a few minutes)
	$(PY) -m pytest tests -n auto -q

lint: install
	$(VENV)/bin/ruff check sb3_influence tests examples benchmarks
	$(VENV)/bin/ruff format --check sb3_influence tests examples benchmarks

format: install
	$(VENV)/bin/ruff format sb3_influence tests examples benchmarks
	$(VENV)/bin/ruff check --fix sb3_influence tests examples benchmarks

type: install
	$(VENV)/bin/mypy sb3_influence

benchmark: install  ## scoring cost / one PPO epoch (writes benchmarks/overhead.md)
	$(PY) benchmarks/overhead.py --output benchmarks/overhead.md

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
