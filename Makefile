# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cvlabel-installed
DEMO_DIR ?= outputs/demo

.PHONY: setup demo test clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml changes. Debian's python3 needs python3-venv for
# `-m venv`; as root we install it, otherwise we say what is missing.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "cvlabel needs Python >= 3.10 (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "Python's venv module is missing: sudo apt-get install python3-venv"; exit 1; fi; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

# espeak-ng gives more natural demo voices; without it the built-in formant synthesizer is used.
demo: $(STAMP)
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq espeak-ng) || echo "could not install espeak-ng: using the formant voices"; \
	  else echo "espeak-ng is not installed: using the built-in formant voices"; fi; }
	rm -rf $(DEMO_DIR)
	$(BIN)/cvlabel demo-corpus $(DEMO_DIR)/corpus
	$(BIN)/cvlabel inspect $(DEMO_DIR)/corpus
	@echo
	@echo "demo outputs: $(DEMO_DIR)/ (corpus in $(DEMO_DIR)/corpus, hidden genders in $(DEMO_DIR)/corpus/truth.tsv)"

clean:
	rm -rf $(VENV) $(DEMO_DIR)
