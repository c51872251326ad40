# The two commands: `make run` (set up and serve the example ballot) and `make test`.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: run test lint install postgres chromium bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The NHS.UK frontend (pinned in package.json), served under /static/nhsuk/; axe-core stays in
# node_modules for the browser tests. Neither is committed.
STATIC := app/static/nhsuk

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(STATIC)/.copied: node_modules/.package-lock.json deploy/frontend-assets.sh
	deploy/frontend-assets.sh
	touch $@

install: $(STAMP) $(STATIC)/.copied

run: install
	$(BIN)/mandate demo
	$(BIN)/mandate serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite needs a PostgreSQL server binary (it starts its own on loopback).
postgres:
	@command -v pg_config >/dev/null && test -x "$$(pg_config --bindir)/initdb" || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

# The browser tests drive Debian's Chromium (Playwright cannot fetch a browser of its own here).
chromium:
	@test -x /usr/bin/chromium || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install postgres chromium lint
	$(BIN)/bandit -q -c pyproject.toml -r app -ll
	@echo "=== tests on SQLite (every test) ==="
	$(BIN)/pytest --db=sqlite
	@echo "=== tests on PostgreSQL (every test that touches the database) ==="
	$(BIN)/pytest --db=postgresql -m db

bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python bench/cast.py
	$(BIN)/python bench/mail.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/tally_open.py
	$(BIN)/python bench/national.py

clean:
	rm -rf $(VENV) var node_modules $(STATIC) .pytest_cache .mypy_cache .ruff_cache
