# The two commands a new machine needs: `make run` and `make test`.
# Each sets up the local .venv (and the Debian packages its tests use) on first use.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
APT_PACKAGES := etcd-server etcd-client openssl git golang-go golang-golang-x-mod-dev

.PHONY: run test test-fast bench lint proto clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(APT_STAMP):
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
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
