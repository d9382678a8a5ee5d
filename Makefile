# tlteach: every set-up step is a make target. Needs only Python 3.10+ and make.
#   make course   create .venv, install, execute every notebook on the best device, build the book
#   make test     create .venv, install with test extras, run unit tests + nbval (quick preset) + the book check
#   make lab      open JupyterLab on lab/, a working copy of notebooks/ (widgets included)
#   make book     build the book (book/_build/html) from the notebooks' stored outputs, warnings as errors
#   make doctor   check the installation
#   make practice regenerate practice/ (student versions) from notebooks/ after editing a notebook
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Extra pip arguments for torch. Empty by default (PyPI's wheel: CUDA on Linux, CPU elsewhere).
# On a Linux machine without a GPU, a CPU-only wheel is far smaller:
#   make course TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: course test lab doctor install lint book practice clean-cache help
help:
	@sed -n '2,8p' Makefile

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, so that nothing pulls a build the user did not choose
$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_PIP_ARGS) "torch>=2.2"
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	@touch $@

# the test extras and the book's: tests/test_book_browser.py builds the book and opens it in Chromium
$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[test,book]"
	@touch $@

$(VENV)/.installed-book: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[book]"
	@touch $@

$(VENV)/.installed-lab: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[lab]"
	@touch $@

install: $(VENV)/.installed

doctor: $(VENV)/.installed
	$(PY) -m tlteach doctor

course: $(VENV)/.installed
	$(PY) -m tlteach doctor
	$(PY) scripts/run_notebooks.py
	@echo
	@echo "Executed notebooks: $(CURDIR)/notebooks/  (timings: $(CURDIR)/benchmarks/notebook_times.csv)"
	@$(MAKE) --no-print-directory book

# Unit tests and nbval over every notebook in the quick preset, two workers on two cores.
test: $(VENV)/.installed-test
	$(PY) -m ruff check .
	TLTEACH_PRESET=quick OMP_NUM_THREADS=1 $(PY) -m pytest -p no:cacheprovider -n 2 --dist loadfile \
		tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m tlteach practice --check

# Practice versions of the notebooks for students (solutions and implementations emptied, outputs cleared).
practice: $(VENV)/.installed
	$(PY) -m tlteach practice

# JupyterLab saves as you work, so it opens a working copy, lab/ (made on the first run; git ignores it): the
# published notebooks/ keep their outputs. lab/practice/ holds the practice versions. As root (a container),
# JupyterLab needs --allow-root.
lab: $(VENV)/.installed-lab $(VENV)/.installed
	@if [ ! -d lab ]; then mkdir -p lab/practice && cp notebooks/[0-9][0-9]-*.ipynb lab/ && \
		cp practice/[0-9][0-9]-*.ipynb lab/practice/ && \
		echo "made lab/, your working copy of notebooks/ (and lab/practice/): edit and run there"; fi
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) lab/

# Jupyter Book 1.x from the stored outputs (nothing executes): seconds. Fails on any warning, and when a
# notebook is missing from book/_toc.yml. Prints the path of the index page last.
book: $(VENV)/.installed-book
	$(PY) scripts/build_book.py

clean-cache: $(VENV)/.installed
	$(PY) -c "from tlteach import cache; print(cache.clear(), 'files removed from', cache.cache_dir())"
