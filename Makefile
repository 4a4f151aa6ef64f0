# Two commands do everything on a fresh machine with Python 3.10+ and pip:
#   make book   set up .venv, execute every notebook (two at a time), build the HTML book in
#               English (_build/html) and Chinese (_build/html/zh)
#   make test   set up .venv and Chromium, lint, unit tests, the book, nbval re-executing the
#               book's executed notebooks and comparing every output, checks of the built book
#               and of its pages in a real browser
# Each target depends on what it needs, so `make -j` cannot check a book that is not built yet.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
# Notebooks executed at a time, by the book build and by nbval (each notebook uses one thread).
JOBS   ?= 2
# tools/nbval_jupyter.py: nbval executes cells as Jupyter does (a trailing ";" hides the value).
NBVAL_OPTIONS := -p tools.nbval_jupyter --nbval --nbval-current-env --nbval-cell-timeout=300 \
	--nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: book test setup lint unit nbval book-check browser chromium bench strip clean gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when requirements.txt or pyproject.toml changed since the last install.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

# Executes the notebooks that have no cached outputs, JOBS at a time, into _build/.jupyter_cache,
# then renders every page from it (book/_ext/notebook_cache.py). A change to course_lib/,
# requirements.txt or pyproject.toml empties the cache first: outputs are never stale.
# Then the Chinese edition (tools/translations.py) from the same sources, the same executed
# notebooks and the catalogues in locales/zh_CN, into _build/html/zh (warnings are errors too).
book: setup
	COURSE_JOBS=$(JOBS) $(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) tools/translations.py build

lint: setup
	$(PY) -m ruff check .

unit: setup
	$(PY) -m pytest -n $(JOBS) --dist loadfile -m "not book and not browser" tests

# The book's executed notebooks (from the cache) executed again by nbval, JOBS at a time, in
# strict mode: every output of every cell must equal the one in the book, after the masks of
# tests/nbval_sanitize.cfg (wall-clock times printed after ⏱, memory addresses, ...). Only the
# notebooks whose executed copy has not passed before are executed (tools/nbval_run.py: all of
# them on a fresh clone or after a course_lib change); NBVAL_ALL=1 executes every notebook.
nbval: book
	$(PY) tools/nbval_run.py --jobs $(JOBS) $(if $(NBVAL_ALL),--all) -- $(NBVAL_OPTIONS)

book-check: book
	$(PY) -m pytest -m book tests

# Finds Chromium (COURSE_CHROMIUM, the system's, Playwright's); installs Debian's chromium and
# fonts-noto-cjk where apt-get can run as root; otherwise fails with the command to run.
chromium: setup
	$(PY) tools/chromium.py --ensure >/dev/null

# The built site in headless Chromium (Playwright drives it; no browser download), JOBS pages
# at a time: every TOC page of both editions, console errors, images, internal links, MathJax,
# Chinese glyphs; screenshots in _build/screenshots.
browser: book chromium
	COURSE_CHROMIUM="$$($(PY) tools/chromium.py)" $(PY) -m pytest -p no:cacheprovider -n $(JOBS) \
		-m browser tests

test: lint unit book nbval book-check browser

# Benchmark ratios (course_lib vs PyTorch, pruned vs dense, int8 vs float) and notebook times:
# _build/bench/results.md and _build/bench/notebook_times.md. Exit status 1 only on a crash.
bench: setup
	$(PY) -m benchmarks.run_all

# Chapter 3.4.2's GPU-only checks (fp16 + GradScaler, nccl DDP, pinned-memory overlap,
# torch.compile, 2:4 sparsity, the notebook's CUDA cells): one line per check, exit 1 if one
# fails; on a machine without a CUDA GPU it says so and exits 0.
gpu-check: setup
	$(PY) tools/gpu_check.py

# Strip outputs and execution counts from every notebook (they are committed clean).
strip: setup
	$(PY) -c "import nbformat,sys;\
	[nbformat.write((lambda nb:([c.update(outputs=[],execution_count=None) for c in nb.cells if c.cell_type=='code'],nb)[1])(nbformat.read(p,4)),p) for p in sys.argv[1:]]" $(NOTEBOOKS)

clean:
	rm -rf _build .pytest_cache .ruff_cache
