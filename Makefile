# Two commands for a fresh machine: `make train` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: train test test-fast notebooks lab mirror diagram bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[test]"
	touch $@

train: $(BIN)/.installed     ## train the seed preset on MNIST (10 epochs) into runs/seed
	$(BIN)/python -m vit_lib.train --preset seed --dataset mnist --out runs/seed

test: $(BIN)/.installed      ## the whole suite: unit tests, mirror check, every notebook under nbval
	$(BIN)/python -m pytest tests notebooks $(NBVAL)

test-fast: $(BIN)/.installed ## unit tests only, no notebooks, no real-data training
	$(BIN)/python -m pytest tests -m "not slow"

notebooks: $(BIN)/.installed ## re-execute and save every notebook in place (run after editing one)
	$(BIN)/python tools/execute_notebooks.py

lab: $(BIN)/.installed       ## open the lessons in JupyterLab (installs it on first use)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/pip install -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks

mirror: $(BIN)/.installed    ## are notebooks and vit_lib the same code?
	$(BIN)/python -m vit_lib.mirror

diagram: $(BIN)/.installed   ## redraw vit_architecture/vit.png and vit.svg from the seed config
	$(BIN)/python vit_architecture/draw.py

bench: $(BIN)/.installed     ## speed and accuracy benchmarks; rewrites the README results (about 46 min)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
