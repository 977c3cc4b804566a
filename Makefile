# Two commands from a fresh clone (Python 3.11 + pip):
#   make demo   installs everything and serves the bundled Vermont address model
#   make test   installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test browser bench bundle clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU build: a bare `pip install torch` pulls GBs of CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[serve,test]" -e ./clients/python
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/synth serve

# The browser test drives Debian's Chromium; install it when it is missing (needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/vermont.py

bundle: install
	$(BIN)/python bench/bundle_vermont.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
