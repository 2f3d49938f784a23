# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install chromium java demo test bench bench-full lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

# The HTML report's browser test drives Debian's chromium (Playwright cannot download its own).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The Spark engine's tests run a local PySpark session, which needs a Java runtime (8, 11 or 17).
java:
	@command -v java >/dev/null || (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless)

test: install chromium java
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_registry.py
	$(PY) benchmarks/bench_retrieval.py --size small --no-feast
	$(PY) benchmarks/bench_first_call.py --repeat 3 --no-feast
	$(PY) benchmarks/bench_online.py --size small --no-feast
	$(PY) benchmarks/bench_windows.py --size small
	$(PY) benchmarks/bench_models.py --size small --no-mlserver
	$(PY) benchmarks/bench_auth.py --number 20000 --repeat 3
	$(PY) benchmarks/bench_gates.py --quick
	$(PY) benchmarks/bench_shadow.py --quick
	$(PY) benchmarks/bench_stream_predict.py --quick
	$(PY) benchmarks/bench_batch_predict.py --quick
	$(PY) benchmarks/bench_scale.py --quick
	$(PY) benchmarks/bench_cluster.py
	$(PY) benchmarks/bench_spark.py --size small
	$(PY) benchmarks/bench_ui.py --accounts 10000 --requests 20
	$(PY) benchmarks/bench_ui_duplicates.py

bench-full: install
	$(PY) benchmarks/bench_registry.py --with-feast
	$(PY) benchmarks/bench_retrieval.py --size both
	$(PY) benchmarks/bench_first_call.py
	$(PY) benchmarks/bench_online.py --size full
	$(PY) benchmarks/bench_windows.py --size full
	$(PY) benchmarks/bench_models.py --size full
	$(PY) benchmarks/bench_auth.py
	$(PY) benchmarks/bench_materialize.py --accounts 10000
	$(PY) benchmarks/bench_overload.py
	$(PY) benchmarks/bench_drift.py --rows 1000000 --features 20
	$(PY) benchmarks/bench_gates.py
	$(PY) benchmarks/bench_shadow.py
	$(PY) benchmarks/bench_stream_predict.py
	$(PY) benchmarks/bench_batch_predict.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_cluster.py --rows 10000000 --keys 100000
	$(PY) benchmarks/bench_spark.py --size large
	$(PY) benchmarks/bench_ui.py
	$(PY) benchmarks/bench_ui_duplicates.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
