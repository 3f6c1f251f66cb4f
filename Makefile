# LandmarkInit developer commands. `make test` and `make demo` work on a fresh machine: they create .venv
# with the pinned dependencies (requirements/lock.txt) and the `landmarkinit` command, then run.
# Set-up is redone only when the lock file, pyproject.toml or the Debian package list change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PYTEST_ARGS ?=
DEMO_OUT := build/demo

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
	$(VENV)/bin/landmarkinit register \
	    --moving-landmarks Resources/SampleData/landmarks/mr_landmarks.mrk.json \
	    --fixed-landmarks Resources/SampleData/landmarks/us_landmarks.mrk.json \
	    --output $(DEMO_OUT)/mr_to_us.h5 --report $(DEMO_OUT)/report.json --force

bench: setup
	$(PY) Testing/bench/run_benchmarks.py --output docs/benchmarks.md

lint: setup
	$(VENV)/bin/ruff check LandmarkInit Testing tools

# Re-resolve the pinned environment from requirements/base.in (needs the package registry).
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet -r requirements/base.in
	build/lock-venv/bin/pip freeze --all | grep -v '^pip==' > requirements/lock.txt
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
