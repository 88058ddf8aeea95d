# One entry point for the routines. The README's two commands are `make run` and `make test`.
.PHONY: run test lint format typecheck bench install

install:
	./scripts/install.sh --test

run:
	./scripts/dev.sh

test:
	./scripts/test.sh

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: install
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

typecheck: install
	.venv/bin/mypy

bench:
	./scripts/bench.sh
