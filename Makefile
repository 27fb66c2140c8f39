# The README's commands. Each sets up what it needs on a fresh machine.
#   make demo   the main job: every notebook end to end on the built-in tiny models, offline
#   make test   the test suite (notebooks, widget in a real browser, models on CPU)
#   make bench  the benchmarks (benchmarks/README.md)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch and torchvision pinned as a pair that imports together: segment-anything imports
# torchvision, and the index's torchvision fails next to other torch builds
# ("operator torchvision::nms does not exist").
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser demo test test-all test-fast test-floors bench lint format

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e ".[test,ray]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sdsam-nb)" >/dev/null
	touch $@

# Debian's Chromium for the real-browser widget test (playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m sdsam_nb run --tiny --output-root outputs
	HF_HUB_OFFLINE=1 $(PY) -m sdsam_nb run --tiny --walkthrough --output-root outputs

# The whole suite: the checkout's tests (editable install, ipywidgets 8), then the installed
# wheel at the declared lower bounds (test-floors, below).
# Two pytest processes (pytest-xdist), each test file in one of them: most tests wait on
# notebook kernels, so two share the two cores of the CI machine well. JOBS=1: one process.
JOBS   ?= 2
XDIST  := $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadfile)
# With two processes, each (and the kernels, workers and subprocesses its tests start) computes
# on one thread: two of torch's thread pools on two cores oversubscribe them (make test took
# 5:20 with them, the checkout stage 272 s against 199 s with one thread each).
THREADS := $(if $(filter 1,$(JOBS)),,OMP_NUM_THREADS=1)

test: setup browser
	HF_HUB_OFFLINE=1 $(THREADS) $(PY) -m pytest -q $(XDIST) -m "not installed and not long" tests
	$(MAKE) --no-print-directory test-floors

# make test, and the longer second checks (marker "long": a Ray worker killed mid-item, the
# sweep on Ray)
test-all: setup browser
	HF_HUB_OFFLINE=1 $(THREADS) $(PY) -m pytest -q $(XDIST) -m "not installed" tests
	$(MAKE) --no-print-directory test-floors

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not browser" tests

# The kit as pip installs it on Colab: a wheel (not editable) in an environment of its own,
# with the packages Colab brings at their own versions held at the lowest versions
# pyproject.toml allows (.ci/floors.py) and the test tools pinned; the tests the floors can
# break (FLOOR_TESTS, their fast ones) and test_installed.py run from outside the checkout.
FLOOR  ?= .venv-floor
# what the floors can break, in a small subset: the imports, the parameters, the widget (ipywidgets
# 7.7.1, ipycanvas), then test_installed.py (notebook 02 under papermill and sdsam-nb run --tiny:
# every notebook, the models and backgrounds on diffusers, transformers, huggingface_hub and
# accelerate at their floors)
FLOOR_TESTS := test_imports.py test_runs.py test_validate.py test_packaging.py test_widget.py
FPY    := $(FLOOR)/bin/python

test-floors: setup $(FLOOR)/.base
	rm -rf build/wheel && $(PY) -m pip wheel -q --no-deps -w build/wheel .
	$(PY) .ci/floors.py > build/floors.txt
	$(FPY) -m pip install -q -c build/floors.txt "$$(ls build/wheel/sdsam_nb-*.whl)[test]"
	$(FPY) -m pip install -q --force-reinstall --no-deps build/wheel/sdsam_nb-*.whl
	$(FPY) -m pip list 2>/dev/null | grep -iE '^(diffusers|transformers|huggingface.hub|accelerate|ipywidgets|ipycanvas|papermill) '
	cd "$$(mktemp -d)" && HF_HUB_OFFLINE=1 $(THREADS) $(CURDIR)/$(FPY) -m pytest -q -p no:cacheprovider \
	  $(XDIST) -m "installed or not (slow or browser)" \
	  $(addprefix $(CURDIR)/tests/,$(FLOOR_TESTS) test_installed.py)

# the floor environment's interpreter, pip and torch (what the wheel's install does not change).
# torch's CUDA build (torch, triton, nvidia-*: 5.3 GB) is hard-linked from the checkout's venv
# (.ci/link_torch.py: the same files, no second copy on the disk; pip finds them installed).
PURELIB := -c 'import sysconfig; print(sysconfig.get_path("purelib"))'
$(FLOOR)/.base: Makefile .ci/link_torch.py $(VENV)/.installed
	test -x $(FPY) || $(PYTHON) -m venv $(FLOOR)
	$(FPY) -m pip install -q --upgrade pip
	$(PY) .ci/link_torch.py "$$($(PY) $(PURELIB))" "$$($(FPY) $(PURELIB))"
	$(FPY) -m pip install -q $(TORCH)
	touch $@
