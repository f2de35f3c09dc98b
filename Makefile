# metajax: two-command set-up. `make train` trains the default run; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/rl2-bandit-$(shell date +%Y%m%d-%H%M%S)
SWEEP ?= benchmarks/sweeps/seeds.toml

.PHONY: install train test test-all bench bench-gpu lint format sweep clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) -m metajax train rl2 --env bernoulli-bandit --env-options arms=5 \
		--episodes-per-trial 10 --num-tasks 512 --num-updates 300 --run-dir $(RUN_DIR)

test: install
	$(PY) -m pytest -q -n 2 --durations=15

test-all: install
	$(PY) -m pytest -q -n 2 -m ''

bench: install
	$(PY) -m benchmarks.run_all --suite cpu

bench-gpu: install
	$(PY) -m benchmarks.run_all --suite gpu

sweep: install
	$(PY) -m metajax sweep $(SWEEP)

lint: install
	$(PY) -m ruff check src envs tests benchmarks
	$(PY) -m ruff format --check src envs tests benchmarks

format: install
	$(PY) -m ruff format src envs tests benchmarks
	$(PY) -m ruff check --fix src envs tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info runs
