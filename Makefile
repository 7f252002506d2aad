# Two commands on a fresh machine: `make demo` runs the pipeline end to end on
# the generated demo data; `make test` runs every test. Both create .venv first.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

# TFX 1.16 supports Python <3.11 only: find a python3.10 (PATH, then pyenv).
PYTHON310 ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 \
	/root/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)

.PHONY: venv demo test test-fast test-bf16 bench clean browser docs-screenshots docs-config

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt setup.py
	@test -n "$(PYTHON310)" || { echo "error: Python 3.10 not found (TFX 1.16 needs >=3.9,<3.11); install it or set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	# The Kubeflow SDK wheel (top-level import `kubeflow`), for the test that installs
	# our wheel next to it; downloaded here because tests never reach the network.
	$(PY) -m pip download --quiet --no-deps --dest $(VENV)/test-wheels kubeflow==0.5.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fakefaces demo-data --out runs/demo_data
	$(VENV)/bin/fakefaces run --config pipeline/configs/demo.yaml

# The web page's browser tests drive Debian's headless Chromium through
# chromium-driver; install them when missing (root only; otherwise those tests skip and say why).
# --no-install-recommends: only what Chromium needs to run headless (no print server,
# mDNS daemon or desktop extras, which the recommended packages would add).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver; \
	  else echo "warning: chromium/chromium-driver missing and not root: the browser tests will skip" >&2; fi; \
	fi

# One pytest worker per core (pytest-xdist); a module's tests that share a module fixture
# stay on one worker, and units with a slow test are handed out first (tests/conftest.py;
# --no-loadscope-reorder keeps that order). PYTEST_WORKERS=0 runs in this process alone.
# PYTEST_ARGS: more pytest options (e.g. --junitxml=FILE for every test's duration).
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?=
PYTEST := $(VENV)/bin/pytest tests -q -rs -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup \
  --no-loadscope-reorder $(PYTEST_ARGS)

test: $(STAMP) browser
	@# pytest, not `python -m pytest`: that would put the repository root on sys.path,
	@# where the bare folders shadow installed packages (the Kubeflow SDK's `kubeflow`).
	@# -rs: the reason of every skipped test. Screenshots go to pytest's temporary folder.
	$(PYTEST) --durations=15

# The developer's loop: every test not marked slow (pytest.ini), in a few minutes.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow" --durations=10

# The tests that train or compare numbers, with train.precision `auto` resolving as on a
# CPU with AVX512-BF16/AMX (bfloat16, emulated on CPUs without it): both paths on any machine.
test-bf16: $(STAMP)
	$(PYTEST) --cpu-bf16 tests/test_architectures.py tests/test_operating_point.py \
	  tests/test_trainer_run_fn.py tests/test_trainer_precision.py tests/test_pipeline_e2e.py

# Refreshes the pictures the docs show (docs/web_page.png, docs/model_card.png) from
# the browser tests; `make test` never writes into the repository.
docs-screenshots: $(STAMP) browser
	FAKEFACES_SCREENSHOT_DIR=docs $(VENV)/bin/pytest tests/test_web_browser.py -q -rs \
	  -p no:cacheprovider -k screenshot

# Rewrites docs/configuration.md, every configuration key, from the config dataclasses and
# their comments; tests/test_config_reference.py fails when it is out of date.
docs-config: $(STAMP)
	$(VENV)/bin/fakefaces config-reference --out docs/configuration.md

# The benches that read a finished run (pipeline, beam_steps, same_outputs) take its
# metadata.sqlite as an argument: docs/performance.md.
STANDALONE_BENCHES = ablation_shortcut annotate clip_export clip_tower data_gate fairness_intervals ingest photo serve skew train
bench: $(STAMP)
	for b in $(STANDALONE_BENCHES); do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf runs bench/results
