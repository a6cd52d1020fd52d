# make demo  -> install, then serve the bundled model + an indexed gallery on http://127.0.0.1:8000
# make test  -> install, then run the test suite (.ci/run calls this)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install demo test bench bundle clean

install: $(STAMP)

# torch first, exactly pinned: pip then finds the CPU wheel on disk instead of a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[serve,train,test]'
	touch $(STAMP)

demo: install
	$(BIN)/vistas demo --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/vistas bench

clean:
	rm -rf build runs demo_data .pytest_cache
