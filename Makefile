# Two commands on a fresh machine with only python3 and pip:
#   make demo   create .venv, install, build a small dataset from synthetic sources
#   make test   create .venv (+ a separate Label Studio venv, + Chromium when missing), run all tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= sam,train,hub,review,dev
STAMP  := $(VENV)/.installed
LS_VENV  ?= .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed
DEMO_WORKSPACE ?= demo-workspace

.PHONY: demo test venv labelstudio chromium bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# Label Studio lives in its own venv: its pinned Django stack must not meet the project's.
labelstudio: $(LS_STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet 'label-studio==1.23.*'
	touch $@

# Headless Chromium for the report's browser test (skipped with a message when unavailable).
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) >/dev/null 2>&1 \
		|| echo "chromium could not be installed: the browser test will be skipped"

demo: $(STAMP)
	$(VENV)/bin/risbench demo --workspace $(DEMO_WORKSPACE)

test: $(STAMP) $(LS_STAMP) chromium
	$(PY) -m pytest -q

bench: $(STAMP) $(LS_STAMP)
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_refine.py
	$(PY) benchmarks/bench_finalize.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_review.py

clean:
	rm -rf $(VENV) $(LS_VENV) $(DEMO_WORKSPACE) .pytest_cache
