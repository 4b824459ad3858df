# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cvlabel-installed
DEMO_DIR ?= outputs/demo

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml changes. Debian's python3 needs python3-venv for
# `-m venv`; as root we install it, otherwise we say what is missing.
# setup.py and the C sources too: the editable install builds cvlabel._bandmp3 in place
$(STAMP): pyproject.toml setup.py cvlabel/_bandmp3/bandmp3.c cvlabel/_bandmp3/minimp3.h
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "cvlabel needs Python >= 3.10 (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "Python's venv module is missing: sudo apt-get install python3-venv"; exit 1; fi; }
	@# libmpg123 decodes MP3 straight to the model's rate (about 2x soundfile + soxr); optional
	@ldconfig -p 2>/dev/null | grep -q libmpg123.so.0 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq libmpg123-0) || echo "could not install libmpg123-0: MP3 is decoded by soundfile + soxr"; \
	  else echo "libmpg123 is not installed (sudo apt-get install libmpg123-0): MP3 is decoded by soundfile + soxr"; fi; }
	@# a C compiler builds cvlabel._bandmp3, the fastest MP3 decoder; optional
	@command -v cc >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq gcc python3-dev) || echo "could not install gcc: cvlabel._bandmp3 is not built"; \
	  else echo "no C compiler (sudo apt-get install gcc): cvlabel._bandmp3 is not built"; fi; }
	@# torch's CUDA build makes the venv ~6 GB (README, "Why these torch wheels"): on a full disk pip
	@# stops half-way with a bare OSError, so say beforehand what is missing
	@free_gb=$$(df -Pk . | awk 'NR == 2 { print int($$4 / 1048576) }'); [ "$${free_gb:-0}" -ge 7 ] || \
	  echo "warning: $${free_gb} GB free on this disk; the install needs about 7 GB (the venv is ~6 GB)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test,dask,lhotse]'
	touch $@

# The linter, the formatter's check and the type checker; `make test` runs them first, so CI does too.
# mypy checks the tests and benchmarks too: every call and annotation, unannotated test functions allowed.
LINTED := cvlabel tests benchmarks
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/mypy tests benchmarks --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls

# The slow test that renders report.html in a browser needs Debian's chromium: as root we install it
# (measured here: 1 min 22 s with apt-get update, 104 new packages, ~360 MB for chromium itself);
# without it that one test is skipped, saying why.
test: lint
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq chromium) || echo "could not install chromium: the browser test is skipped"; \
	  else echo "chromium is not installed (sudo apt-get install chromium): the browser test of report.html is skipped"; fi; }
	$(BIN)/python -m pytest

# The whole loop on a corpus made here: corpus -> train -> infer -> export -> retrain -> compare,
# then the pseudo-labels scored against the corpus's hidden truth. espeak-ng gives more natural
# demo voices; without it the built-in formant synthesizer is used.
CVLABEL := $(BIN)/cvlabel
DEMO_CACHE := --set train.cache_dir=$(DEMO_DIR)/cache
demo: $(STAMP)
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq espeak-ng) || echo "could not install espeak-ng: using the formant voices"; \
	  else echo "espeak-ng is not installed: using the built-in formant voices"; fi; }
	rm -rf $(DEMO_DIR)
	$(CVLABEL) demo-corpus $(DEMO_DIR)/corpus
	$(CVLABEL) inspect $(DEMO_DIR)/corpus
	$(CVLABEL) train $(DEMO_DIR)/corpus --out $(DEMO_DIR)/run $(DEMO_CACHE)
	$(CVLABEL) infer $(DEMO_DIR)/corpus --unlabeled --model $(DEMO_DIR)/run --out $(DEMO_DIR)/predictions
	@echo "== ~12 reference speakers per gender can certify a precision of at most ~0.78 (0.05^(1/12)):"
	@echo "== the demo asks for 0.75; a real release has hundreds or thousands of speakers behind 0.99"
	$(CVLABEL) export parquet $(DEMO_DIR)/corpus --predictions $(DEMO_DIR)/predictions --out $(DEMO_DIR)/augmented \
	  --target-precision 0.75
	$(CVLABEL) train $(DEMO_DIR)/corpus --augmented $(DEMO_DIR)/augmented --out $(DEMO_DIR)/run-retrained $(DEMO_CACHE)
	@echo; echo "== test metrics before and after retraining on the pseudo-labels"
	$(CVLABEL) compare $(DEMO_DIR)/run $(DEMO_DIR)/run-retrained --html $(DEMO_DIR)/compare.html
	@echo; echo "== pseudo-labels against the demo corpus's hidden truth"
	$(CVLABEL) check-truth $(DEMO_DIR)/augmented --truth $(DEMO_DIR)/corpus/truth.tsv
	@echo; echo "demo outputs in $(DEMO_DIR)/: corpus/, run/, predictions/, augmented/, run-retrained/"
	@echo "open in a browser: $(DEMO_DIR)/run/report.html, $(DEMO_DIR)/augmented/report.html, $(DEMO_DIR)/compare.html"

# Speed and memory benchmarks (tables on stdout, details in outputs/bench/bench.json). On the
# development corpus: make bench CORPUS=../shared/corpora/devcorpus
bench: $(STAMP)
	$(BIN)/python benchmarks/infer_speed.py --out outputs/bench $(if $(CORPUS),--corpus $(CORPUS))
	$(BIN)/python benchmarks/train_speed.py --out outputs/bench-train $(if $(CORPUS),--corpus $(CORPUS))

clean:
	rm -rf $(VENV) $(DEMO_DIR)
