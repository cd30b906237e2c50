# One venv for everything. torch==2.13.0 is installed first: it is a CPU wheel here, and a plain
# `torch` requirement would otherwise pull a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint format type docs benchmark clean

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

# The docs extra (Sphinx, furo, myst-parser) on top of the test install; re-done when pyproject.toml changes.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed  ## the documentation site in docs/_build/html (Sphinx warnings are errors)
	$(VENV)/bin/sphinx-build -W --keep-going -E -b html docs docs/_build/html

benchmark: install  ## scoring cost / one PPO epoch (writes benchmarks/overhead.md)
	$(PY) benchmarks/overhead.py --output benchmarks/overhead.md

clean:
	rm -rf $(VENV) runs build dist docs/_build *.egg-info .pytest_cache .mypy_cache .ruff_cache
