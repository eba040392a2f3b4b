# The two commands a fresh machine needs are `make demo` and `make test`.
# uv is used from PATH, or bootstrapped into .tools/ with nothing but python3.

UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit bench sync

demo: sync
	$(UV) run erp-relay demo

test: sync lint typecheck
	$(UV) run pytest $(PYTEST_ARGS)

lint: sync
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: sync
	$(UV) run mypy

bench: sync
	$(UV) run python bench/relay_overhead.py

sync: $(UV)
	$(UV) sync --frozen

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv
