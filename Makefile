# The two commands a new machine needs: `make run` and `make test`.
# Each sets up the local .venv (and the Debian packages its tests use) on first use.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := etcd-server etcd-client openssl git

.PHONY: run test test-fast bench lint proto clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(APT_STAMP):
	@if ! command -v etcd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); fi; \
	fi
	mkdir -p $(VENV) && touch $(APT_STAMP)

run: $(STAMP)
	$(VENV)/bin/provledger run

test: $(STAMP) $(APT_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy proto/provledger ledger gateway anchoring clients
	$(VENV)/bin/lint-imports
	$(PY) proto/generate.py --check

proto: $(STAMP)
	$(PY) proto/generate.py

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) provledger-data
