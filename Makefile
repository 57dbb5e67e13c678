# make run   : set up .venv and run the demo study (config.yaml), fully offline
# make test  : set up .venv, lint, run the test suite, then the rehearsal (what CI runs)
# make test-quick : unit tests only (no workflow runs), for day-to-day work
# make rehearsal : the paper study (config/paper.yaml) in miniature against a local fake hub (README: The rehearsal)
# make lint  : ruff, snakefmt --check and snakemake --lint (settings in pyproject.toml)
# make setup PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu : torch's CPU build (README: Set-up)
VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
ARGS ?=
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup run test test-quick rehearsal lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt envs/constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt -c envs/constraints.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# the config files' YAML is checked first: Snakemake's own loader names neither file nor line
run: setup
	$(VENV)/bin/python -m wildmerge.study.configcheck $(ARGS)
	$(VENV)/bin/snakemake --cores $(CORES) $(ARGS)

test: lint
	$(VENV)/bin/pytest -v
	$(VENV)/bin/python tests/rehearsal/run.py --cores $(CORES)

test-quick: setup
	$(VENV)/bin/pytest -q -m "not slow"

# tiny checkpoints under the paper's hub ids, synthetic rows for its benchmarks' datasets: fetch
# (a gated base refused without a token), pre-flight, 7 methods, App. C and E, budget, tables, report
rehearsal: setup
	$(VENV)/bin/python tests/rehearsal/run.py --cores $(CORES)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check Snakefile rules/
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results/demo resources/demo .snakemake logs .rehearsal
