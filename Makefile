# zvh-gateway: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR  ?= .demo
BASE_PORT ?= 8400

.PHONY: run test lint typecheck imports unit bench clean sodium promtool chromium deploy-check

run: $(STAMP)
	$(BIN)/zvh-gateway demo --dir $(DEMO_DIR) --base-port $(BASE_PORT)

test: $(STAMP) lint typecheck imports deploy-check unit

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP) promtool chromium
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q -p no:cacheprovider
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

# The Prometheus config, the alert rules and their unit tests (deploy/).
deploy-check: promtool
	promtool check config deploy/prometheus.yml
	promtool check rules deploy/alerts.yml
	promtool test rules deploy/alerts.test.yml

bench: $(STAMP)
	$(BIN)/python bench/exchange.py

# ristretto255 (the OPRF) comes from the system libsodium, loaded by pysodium.
sodium:
	@$(PYTHON) -c "import ctypes.util,sys; sys.exit(0 if ctypes.util.find_library('sodium') else 1)" \
	|| { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	       echo "installing libsodium (needed for ristretto255)"; \
	       apt-get update -qq && apt-get install -y -qq libsodium23 >/dev/null; \
	     else echo "zvh-gateway needs libsodium: run 'sudo apt-get install libsodium23' and retry"; exit 1; fi; }

# promtool checks the deploy/ files; the ops tests scrape a hub with the real Prometheus.
# Both come from Debian's `prometheus` package. (On a host run by systemd, Debian also
# starts its prometheus service on :9090: `systemctl disable --now prometheus` if unwanted.)
promtool:
	@command -v promtool >/dev/null && [ -x /usr/bin/prometheus ] \
	|| { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	       echo "installing prometheus (promtool and the server, for deploy/ and tests/ops)"; \
	       apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	     else echo "make test needs promtool and prometheus: run 'sudo apt-get install prometheus' and retry"; exit 1; fi; }

# The browser tests (tests/browser/) drive Debian's chromium through Playwright's own driver
# (from the pip package); Playwright never downloads a browser here.
chromium:
	@[ -x /usr/bin/chromium ] \
	|| { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	       echo "installing chromium (for the browser tests in tests/browser)"; \
	       apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	     else echo "make test needs Debian's chromium: run 'sudo apt-get install --no-install-recommends chromium' and retry"; exit 1; fi; }

$(STAMP): pyproject.toml | sodium
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" \
	|| { echo "zvh-gateway needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) \
	|| { echo "cannot create a virtualenv: run 'sudo apt-get install python3-venv' and retry"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .coverage .coverage.* *.egg-info
