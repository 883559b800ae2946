# `make demo` runs the main job on built-in defaults; `make test` runs the test suite; `make docs` builds the
# documentation (docs/_build/html/index.html: executed tutorials, warnings as errors, no network).
# Both create .venv on first use. torch is installed first, pinned, so pip never pulls CUDA builds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= symprobe-demo

.PHONY: demo test docs venv venv-mace venv-metatrain clean

$(BIN)/symprobe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,metatomic,ipi,ice,pretrained,crystal,cluster,docs]"
	touch $(BIN)/symprobe

venv: $(BIN)/symprobe

# The peer models of benchmarks/mace_water.py and benchmarks/metatrain_pet.py, each in its own environment.
venv-mace venv-metatrain: venv-%:
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q torch==2.13.0
	.venv-$*/bin/pip install -q -e ".[$*]"

demo: venv
	$(BIN)/symprobe demo --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q -ra

docs: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(OUT) docs/_build docs/tutorials docs/concepts docs/reference/generated docs/sg_execution_times.rst
