# Lungmark: `make run` starts the whole tool on its embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Services used by the tests (real PostgreSQL and Redis).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/lungmark
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test venv services browser nginx migrate demo clean bench lint

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput -v0

demo: migrate
	$(PY) manage.py bootstrap_demo

# DATA=folder imports it first; an empty database gets the sample beside the repository, if any.
run: demo
	@scripts/demo_data.sh "$(DATA)"
	@HOST=$(HOST) PORT=$(PORT) scripts/run_local.sh

services:
	scripts/services.sh

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Debian's nginx, run by tests/trust/test_nginx.py from deploy/nginx.conf in front of gunicorn.
nginx:
	@command -v nginx >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq nginx >/dev/null)

test: venv services browser nginx
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/model_speed.py

clean:
	rm -rf var test-artifacts .pytest_cache
