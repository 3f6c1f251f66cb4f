# LandmarkInit developer commands. `make test` and `make demo` work on a fresh machine: they create .venv
# with the pinned dependencies (requirements/lock.txt) and the `landmarkinit` command, then run.
# Set-up is redone only when the lock file, pyproject.toml or the Debian package list change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PYTEST_ARGS ?=
DEMO_OUT := build/demo
SAMPLE_CASE := Resources/SampleData/phantom/case_0000

.PHONY: setup test demo bench lint lock clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt requirements/debian.txt pyproject.toml
	bash tools/install-debian-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check LandmarkInit Testing tools
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	@mkdir -p $(DEMO_OUT)
	@echo "== 1. register the shipped landmark pair (Resources/SampleData/landmarks) =="
	$(VENV)/bin/landmarkinit register \
	    --moving-landmarks Resources/SampleData/landmarks/mr_landmarks.mrk.json \
	    --fixed-landmarks Resources/SampleData/landmarks/us_landmarks.mrk.json \
	    --output $(DEMO_OUT)/mr_to_us.h5 --report $(DEMO_OUT)/report.json --force
	@echo "== 2. the whole initialization on the synthetic sample case: detect (shipped two-stage models), fit, QA, report =="
	@echo "   (exit status 3 = finished, result flagged for review: accepted here, the report says why)"
	$(VENV)/bin/landmarkinit run --mr $(SAMPLE_CASE)/mr.nrrd --us $(SAMPLE_CASE)/us.nrrd \
	    --output-dir $(DEMO_OUT)/run --force || test $$? -eq 3
	@echo "open $(DEMO_OUT)/run/report.html; load $(DEMO_OUT)/run/*.mrk.json and mr_to_us.h5 in Slicer"
	@echo "(ground truth of the sample case: $(SAMPLE_CASE)/mr_to_us.h5; synthetic data)"

bench: setup
	$(PY) Testing/bench/run_benchmarks.py --output docs/benchmarks.md

lint: setup
	$(VENV)/bin/ruff check LandmarkInit Testing tools

# Re-resolve the pinned environment from requirements/base.in (needs the package registry).
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet -r requirements/base.in
	build/lock-venv/bin/pip freeze --all | grep -v '^pip==' \
	    | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > requirements/lock.txt
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
