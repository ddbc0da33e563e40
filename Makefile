# Two commands for a fresh machine: `make train` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lint gpu-check train weights test test-fast test-oldest notebooks lab colab mirror diagram images bench clean site student

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[test,site]"
	touch $@

train: $(BIN)/.installed     ## train the seed preset on MNIST (10 epochs) into runs/seed
	$(BIN)/python -m vit_lib train --preset seed --dataset mnist --out runs/seed

weights: $(BIN)/.installed   ## train the models that ship (seed 0, one thread) and write vit_lib/weights/ (about 15-25 min)
	$(BIN)/python tools/make_weights.py

test: $(BIN)/.installed      ## the whole suite: unit tests, mirror check, every notebook under nbval
	@# a fresh run cache (vit_lib.machinery.run_cache): lessons 06, 07 and the student edition reuse the
	@# runs the lessons before them trained in this test run, never an older run's
	cache=$$(mktemp -d) && VIT_CACHE_DIR=$$cache $(BIN)/python -m pytest tests notebooks $(NBVAL); \
	  status=$$?; rm -rf "$$cache"; exit $$status

lint: $(BIN)/.installed      ## ruff (pyproject's [tool.ruff]): pyflakes, pycodestyle, sorted imports, bugbear
	$(BIN)/ruff check .

test-fast: $(BIN)/.installed ## unit tests only, no notebooks, no real-data training
	$(BIN)/python -m pytest tests -m "not slow and not site"

test-oldest:                 ## the tests + a short run of each preset on pyproject's floor versions (.venv-oldest; slow)
	$(PYTHON) tools/test_oldest.py

notebooks: $(BIN)/.installed ## re-execute and save every notebook in place (run after editing one)
	$(BIN)/python tools/execute_notebooks.py

lab: $(BIN)/.installed       ## open the lessons in JupyterLab (installs it on first use; root too)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/pip install -e ".[notebooks]"
	$(BIN)/jupyter lab $$(test "$$(id -u)" = 0 && echo --allow-root) notebooks

colab: $(BIN)/.installed     ## write every lesson's Colab badge + setup cell from pyproject's [project.urls]
	$(BIN)/python tools/colab.py

mirror: $(BIN)/.installed    ## are notebooks and vit_lib the same code?
	$(BIN)/python -m vit_lib mirror

diagram: $(BIN)/.installed   ## redraw vit_architecture/vit.png, vit.svg and you_are_here/*.png from the seed config
	$(BIN)/python vit_architecture/draw.py

images: diagram              ## redraw the pictures and embed them in the lessons (you_are_here, vit.png)
	$(BIN)/python tools/embed_images.py

site: $(BIN)/.installed      ## build the lessons as a static HTML book in site/_build/html (nothing re-run)
	$(BIN)/python -c "import jupyter_book" 2>/dev/null || $(BIN)/pip install -e ".[site]"
	$(BIN)/python tools/build_site.py

gpu-check:                   ## on a CUDA machine: GPU tests, every lesson on the GPU, GPU benchmarks -> docs/gpu.md (no venv: PYTHON must have torch)
	PYTHONPATH=. $(PYTHON) tools/gpu_check.py --write-docs $(GPU_CHECK_ARGS)

bench: $(BIN)/.installed     ## speed and accuracy benchmarks; rewrites docs/results.md (about 46 min)
	$(BIN)/python benchmarks/run_all.py

student: $(BIN)/.installed   ## write notebooks/student/ (solutions removed) and mark the lessons' solution cells for nbgrader
	$(BIN)/python -m vit_lib student

clean:
	rm -rf runs .pytest_cache
