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

.PHONY: setup test demo bench results lint mutate crash-test lock clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt requirements/debian.txt pyproject.toml
	bash tools/install-debian-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check LandmarkInit LandmarkInitResearch Testing tools
	$(VENV)/bin/ruff format --check LandmarkInit LandmarkInitResearch Testing tools
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	@mkdir -p $(DEMO_OUT)
	@echo "== 1. register the shipped landmark pair (Resources/SampleData/landmarks) =="
	$(VENV)/bin/landmarkinit register \
	    --moving-landmarks Resources/SampleData/landmarks/mr_landmarks.mrk.json \
	    --fixed-landmarks Resources/SampleData/landmarks/us_landmarks.mrk.json \
	    --output $(DEMO_OUT)/mr_to_us.h5 --report $(DEMO_OUT)/report.json --force
	@echo "== 2. the whole initialization on the synthetic sample case: detect (shipped two-stage models), fit, QA, report =="
	@echo "   (exit status 3 = finished, result flagged for review: accepted here, step 3 says why)"
	$(VENV)/bin/landmarkinit run --mr $(SAMPLE_CASE)/mr.nrrd --us $(SAMPLE_CASE)/us.nrrd \
	    --output-dir $(DEMO_OUT)/run --force || test $$? -eq 3
	@echo "== 3. why the sample case is flagged (or not): its QA features, the good test cases, its ground truth =="
	@$(PY) tools/explain_qa_flags.py $(DEMO_OUT)/run/report.json --case $(SAMPLE_CASE)
	@echo "open $(DEMO_OUT)/run/report.html; load $(DEMO_OUT)/run/*.mrk.json and mr_to_us.h5 in Slicer"
	@echo "(ground truth of the sample case: $(SAMPLE_CASE)/mr_to_us.h5; synthetic data)"

bench: setup
	$(PY) Testing/bench/run_benchmarks.py --output docs/benchmarks.md

# The results pages in docs/results/ are these commands' own output: the shipped detectors and the initialization
# methods on the 50 held-out phantom test cases (seed 3); the data go to data/test.
TEST_DATA := data/test
TEST_DATA_TEXT := 50 held-out test cases, \`landmarkinit phantom --count 50 --seed 3\` (generator 1.0, mixed end-fire / side-fire probes, 15% of cases with the probe aimed off the gland). Never used for training or for choosing a model or a threshold.
results: setup
	$(VENV)/bin/landmarkinit phantom --count 50 --seed 3 --output $(TEST_DATA) --workers 2 --quiet
	$(VENV)/bin/landmarkinit evaluate-detectors --data $(TEST_DATA) --output-dir docs/results/detectors --quiet \
	    --models Resources/Models/mr_landmarks.json Resources/Models/mr_landmarks_g2l-global.json \
	    Resources/Models/mr_landmarks_dsnt-dist.json Resources/Models/us_landmarks.json \
	    Resources/Models/us_landmarks_g2l-global.json Resources/Models/us_landmarks_dsnt-dist.json \
	    --description "$(TEST_DATA_TEXT) The shipped detectors (docs/models.md): the two-stage defaults, their global stages alone, and the single-stage dsnt-dist models."
	$(VENV)/bin/landmarkinit evaluate --data $(TEST_DATA) --output-dir docs/results/registration --workers 2 --quiet \
	    --description "$(TEST_DATA_TEXT) Shipped detectors and QA thresholds (docs/models.md)."

# Robustness of the shipped detectors to acquisition (axis orders, reslices, clinical series, US spacing), on the
# first 10 test cases: docs/results/robustness/.
.PHONY: robustness
robustness: setup
	$(VENV)/bin/landmarkinit phantom --count 50 --seed 3 --output $(TEST_DATA) --workers 2 --quiet
	$(VENV)/bin/landmarkinit evaluate-robustness --data $(TEST_DATA) --cases 10 --output-dir docs/results/robustness \
	    --models Resources/Models/mr_landmarks.json Resources/Models/us_landmarks.json --quiet --description \
	    "Held-out phantom cases: the first 10 of data/test (\`landmarkinit phantom --count 50 --seed 3\`, seeds never used in training). The shipped detectors; the MR detector before and after issue 22: robustness/mr/; the US candidate trained in a physical frame (not shipped): us_detector/."

# The shipped models rebuilt from scratch (docs/research.md), in build/models: release_chain.json (the phantom data
# and the release-0.1 networks' recorded training chains, from random weights; written from their cards by
# tools/write_release_chain.py), then mr_detector.json from those networks (real PROMISE12 cases read from
# $(PROMISE12), never written to the repository), then ship_models.json (the networks exported under the shipped names,
# the two-stage cards, int8 ONNX files for the MR local networks, the rebuilt detectors compared with Resources/Models).
# 12-16 hours on 2 cores (estimated, docs/research.md); an interrupted run resumes. The results are copied to
# Resources/Models by hand.
PROMISE12 ?= /work/shared/data/promise12
RELEASE_0_1 := 7c4e1de
MODELS_WORK := $(CURDIR)/build/models
.PHONY: models
models: setup
	$(VENV)/bin/landmarkinit experiment LandmarkInitResearch/experiments/release_chain.json \
	    --work-dir $(MODELS_WORK)/release
	@# mr_detector.json starts from the rebuilt release; steps it has done are kept (the release's outputs are final)
	mkdir -p $(MODELS_WORK)/mr_detector/base/Resources/Models
	cp -p $(MODELS_WORK)/release/models/* $(MODELS_WORK)/mr_detector/base/Resources/Models/
	$(VENV)/bin/landmarkinit experiment LandmarkInitResearch/experiments/mr_detector.json \
	    --work-dir $(MODELS_WORK)/mr_detector --set promise12=$(PROMISE12)
	$(VENV)/bin/landmarkinit experiment LandmarkInitResearch/experiments/ship_models.json \
	    --work-dir $(MODELS_WORK)/shipped --set release=$(MODELS_WORK)/release \
	    --set mr_detector=$(MODELS_WORK)/mr_detector --set promise12=$(PROMISE12)

# int8 ONNX local networks of the shipped MR detector against its float ONNX files (commit $(FLOAT_MODELS), extracted
# to build/quantization/float): LandmarkInitResearch/experiments/quantization.json, reports in docs/results/quantization/.
FLOAT_MODELS := ff204d1
.PHONY: quantization
quantization: setup
	mkdir -p build/quantization/float
	git archive $(FLOAT_MODELS) Resources/Models | tar -x -C build/quantization/float
	$(VENV)/bin/landmarkinit experiment LandmarkInitResearch/experiments/quantization.json \
	    --work-dir build/quantization --set promise12=$(PROMISE12)

# Site adaptation (issue 23): LandmarkInitResearch/experiments/site_adaptation.json in build/site_adaptation; the
# MR learning curve starts from the release-0.1 MR detector (extracted to build/site_adaptation/base), which never saw
# a real image; the reports are written to docs/results/site-adaptation/.
.PHONY: site-adaptation
site-adaptation: setup
	mkdir -p build/site_adaptation/base
	git archive $(RELEASE_0_1) Resources/Models | tar -x -C build/site_adaptation/base
	$(VENV)/bin/landmarkinit experiment LandmarkInitResearch/experiments/site_adaptation.json \
	    --work-dir build/site_adaptation --set promise12=$(PROMISE12)

lint: setup
	$(VENV)/bin/ruff check LandmarkInit LandmarkInitResearch Testing tools
	$(VENV)/bin/ruff format --check LandmarkInit LandmarkInitResearch Testing tools

# Mutation testing of the core modules, written to docs/mutation-testing.md; fails below a 90 % score or on a surviving
# mutant not explained in Testing/mutation/equivalent_mutants.toml. Slow (see the page), so not part of `make test`/CI.
# mutmut gets its own venv, build/mutate-venv, layered on .venv (which stays exactly as requirements/lock.txt pins it),
# and runs on a copy of the working tree in build/mutate/. One thread per worker: forked workers must not inherit
# torch's thread pool, and the machine has 2 cores.
MUTATE_CHILDREN ?= 2
mutate: setup
	$(PY) tools/mutation_report.py prepare
	cd build/mutate && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
	    ../mutate-venv/bin/mutmut run --max-children $(MUTATE_CHILDREN) > mutmut.log 2>&1 \
	    || { tail -c 4000 mutmut.log; exit 1; }
	build/mutate-venv/bin/python tools/mutation_report.py report

# Crash test of `landmarkinit run --cases` (Testing/stress/kill_batch.py): the batch is killed (SIGKILL of its parent)
# CRASH_KILLS times at random moments and resumed; every episode must end with every case's complete, loadable
# files, no temporary file, no process left and a true batch_summary.json. About 2 s a kill; not part of `make test`
# (its pytest version kills three times).
CRASH_KILLS ?= 25
crash-test: setup
	$(PY) Testing/stress/kill_batch.py --kills $(CRASH_KILLS) --output docs/crash-test.md

# Re-resolve the pinned environment from requirements/base.in (needs the package registry).
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet -r requirements/base.in
	build/lock-venv/bin/pip freeze --all | grep -v '^pip==' \
	    | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > requirements/lock.txt
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
