# Two entry points for a fresh machine: `make demo` (the main job on the bundled samples)
# and `make test` (the whole suite). Both build .venv with a Python >= 3.12 found by
# scripts/find-python, since the default python3 may be older.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || "$$(scripts/find-python)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Replays the samples against the sample policy into audit.db and prints the summary.
# replay exits 1 when it finds violations (the samples have them on purpose): that is the
# demonstration, so only usage/input errors (exit 2) fail this target.
demo: $(STAMP)
	rm -f audit.db
	$(BIN)/gdpr-audit replay captures/ --policy policies/ --db audit.db; test $$? -le 1
	$(BIN)/gdpr-audit export --format json --db audit.db --output audit.json
	@echo "Full log: audit.db   JSON export: audit.json"

test: $(STAMP)
	$(BIN)/python -m pytest

# Performance, side by side with the baselines (needs Debian's wrk for the proxy part), then
# detection quality, then the same corpus through Presidio (the bench extra: presidio-analyzer
# and its spaCy model from PyPI, installed only here).
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/perf.py
	$(BIN)/python bench/detection/run.py
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/presidio.py

# Fuzzing (fuzz/, atheris): each coverage-guided target for FUZZ_TIME seconds from its corpus
# (fuzz/corpus/<area>, seeded from fuzz/seeds and the shared vectors), then the hypothesis
# properties with the `long` profile. A failing input is saved as fuzz/crash-<sha1>; replay it
# with `$(BIN)/python fuzz/fuzz_<area>.py fuzz/crash-<sha1>`.
FUZZ_TIME ?= 120
fuzz: $(STAMP)
	for area in consent fields captures audit policy; do \
	  $(BIN)/python fuzz/fuzz_$$area.py -max_total_time=$(FUZZ_TIME) -timeout=30 \
	    -artifact_prefix=fuzz/ || exit 1; \
	done
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz_properties.py

clean:
	rm -rf $(VENV) audit.db audit.db.key audit.json
