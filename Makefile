# make demo  -> install, then serve the bundled model + an indexed gallery on http://127.0.0.1:8000
# make test  -> install, then run the test suite (.ci/run calls this)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install browser demo test bench clean

install: $(STAMP)

# torch first, exactly pinned: pip then finds the CPU wheel on disk instead of a CUDA build.
$(STAMP): pyproject.toml clients/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ./clients
	$(BIN)/python -m pip install -q -e '.[serve,train,test,ray]'
	touch $(STAMP)

# Debian's chromium for the search-page test (tests/serving/test_page.py). Installed when missing
# and we are root (CI); otherwise the test says how to install it (and fails when CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "note: chromium is not installed and this is not root; run: sudo apt-get install chromium"; fi; }

demo: install
	$(BIN)/vistas demo --host $(HOST) --port $(PORT)

test: install browser
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/vistas bench

clean:
	rm -rf build runs demo_data .pytest_cache
