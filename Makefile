# Two commands do everything on a fresh machine with Python 3.10+ and pip:
#   make book   set up .venv, execute every notebook, build the HTML book into _build/html
#   make test   set up .venv, unit tests, nbval over every notebook, book build, book checks
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: book test setup lint unit nbval repro book-check browser bench strip clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when requirements.txt or pyproject.toml changed since the last install.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

book: setup
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

lint: setup
	$(PY) -m ruff check .

unit: setup
	$(PY) -m pytest -m "not book and not repro and not browser" tests

nbval: setup
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=300 $(NOTEBOOKS)

# Every notebook executed twice (in parallel) must report identical numbers; cells tagged
# `timing` (wall-clock measurements) are exempt. Writes _build/notebook_times.md.
repro: setup
	$(PY) -m pytest -m repro tests

book-check: setup
	$(PY) -m pytest -m book tests

# The built site in Debian's headless Chromium (Playwright drives it; no browser download):
# every TOC page, console errors, images, internal links, MathJax; screenshots in _build/screenshots.
browser: setup
	$(PY) -m pytest -p no:cacheprovider -s -m browser tests

test: lint unit nbval repro book book-check browser

# Benchmark ratios (course_lib vs PyTorch, pruned vs dense, int8 vs float) and notebook times:
# _build/bench/results.md and _build/bench/notebook_times.md. Exit status 1 only on a crash.
bench: setup
	$(PY) -m benchmarks.run_all

# Strip outputs and execution counts from every notebook (they are committed clean).
strip: setup
	$(PY) -c "import nbformat,sys;\
	[nbformat.write((lambda nb:([c.update(outputs=[],execution_count=None) for c in nb.cells if c.cell_type=='code'],nb)[1])(nbformat.read(p,4)),p) for p in sys.argv[1:]]" $(NOTEBOOKS)

clean:
	rm -rf _build .pytest_cache .ruff_cache
