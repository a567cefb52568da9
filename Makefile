# `make run`: set up .venv and run the quickstart search on the CPU proxy (resumes if interrupted).
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
export RAY_AUTH_MODE := disabled

.PHONY: setup run test bench docs tables browser-test clean

setup: $(STAMP)

# The install compiles every module (pip's default): where PYTHONDONTWRITEBYTECODE is set, as on our 2-core VM, an
# install with --no-compile left each new process (test drivers, Ray workers) compiling torch again (pytest 605 s
# against 395 s).
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/actsearch run configs/quickstart.yaml --name quickstart --resume

# The suite runs in one process per core (at most 4; pytest-xdist), each test file whole in one of them, so a file's
# tests share its Ray instance and fixtures (one more process than cores was slower: 462 s against 417 s on 2 cores).
# A process that dies ends the run (xdist could wait forever for a file it had handed to the dead process).
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --max-worker-restart 0

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/activation_speed.py
	$(VENV)/bin/python benchmarks/child_speed.py
	$(VENV)/bin/python benchmarks/controller_speed.py
	$(VENV)/bin/python benchmarks/orchestration.py

# The shipped tabular benchmarks (docs/tables.md): every one-unit function at 150 steps x 2 seeds (92 min on
# 2 cores), then the paper's top 8, the named baselines and that table's top 30 at 500 steps x 5 seeds, then a second
# curve table of every one-unit function at 100 steps x 1 seed (no default is chosen on it: search efficiency is
# reported there too). Resumable: run it again after a stop.
tables: $(STAMP)
	$(VENV)/bin/actsearch table build configs/table.yaml --seeds 2 --out tables/mnist1d-150.json
	$(VENV)/bin/actsearch table build configs/table.yaml --seeds 5 --set child.steps=500 --name table-full \
		--functions paper,baselines --top 30 --of tables/mnist1d-150.json --out tables/mnist1d-500.json
	$(VENV)/bin/actsearch table build configs/table.yaml --seeds 1 --set child.steps=100 --set 'fidelity.rungs=[11,33,67]' \
		--name table-100 --out tables/mnist1d-100.json

# The dashboard's browser test (tests/test_dashboard.py) loads the page in headless Chromium; it skips where none is
# installed. This installs it from the system's packages where it is missing and we are root, then runs the test.
browser-test: $(STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends chromium; \
		else echo "no chromium: install it (apt-get install chromium) as root, or the browser test skips"; fi; }
	$(VENV)/bin/python -m pytest -q tests/test_dashboard.py

# docs/config.md and docs/operators.md are generated from the code (tests/test_docs.py fails while they are stale).
docs: $(STAMP)
	$(VENV)/bin/python -m search.cli.docs

clean:
	rm -rf $(VENV) *.egg-info
