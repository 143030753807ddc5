# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-gate bench-leakage bench-grid bench-photos bench-calibration bench-startup gpu-check clean

# The install goes through uv (from PyPI, into the venv), which fetches and unpacks wheels in parallel: 31 s on a
# fresh 2-core machine against pip's 99 s, the same pinned versions (constraints.txt pins every package). Where uv
# cannot be had or fails (a registry only pip is configured for), pip installs the same set. --compile-bytecode,
# as pip does by default: where PYTHONDONTWRITEBYTECODE is set (it is on the machines CI runs on), Python never
# writes .pyc files itself, and every process would compile TensorFlow's sources again (15 s an import, not 5).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	($(BIN)/python -m pip install --quiet uv && \
	 $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test]') || \
	($(BIN)/python -m pip install --quiet --upgrade pip && \
	 $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]')
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ablate run $(ARGS)

# pytest exits 5 when it collected no tests; make treats that non-zero status as the failure it is.
# One pytest worker per core (pytest-xdist), each test file on one worker (tests/conftest.py says how they are
# grouped); PYTEST_ARGS="-n 0" runs them in this one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_run.py

bench-gate: $(STAMP)
	$(BIN)/python benchmarks/bench_gate.py

bench-leakage: $(STAMP)
	$(BIN)/python benchmarks/bench_leakage.py

bench-grid: $(STAMP)
	$(BIN)/python benchmarks/bench_grid.py

bench-photos: $(STAMP)
	$(BIN)/python benchmarks/bench_photos.py

bench-calibration: $(STAMP)
	$(BIN)/python benchmarks/bench_calibration.py

bench-startup: $(STAMP)
	$(BIN)/python benchmarks/bench_startup.py

gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info
