# Two commands on a fresh machine with only python3 and pip:
#   make demo   create .venv, install, build a small dataset from synthetic sources
#   make test   create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= sam,dev
STAMP  := $(VENV)/.installed-$(EXTRAS)
DEMO_WORKSPACE ?= demo-workspace

.PHONY: demo test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/risbench demo --workspace $(DEMO_WORKSPACE)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) $(DEMO_WORKSPACE) .pytest_cache
