# The two commands of the README. Each sets up .venv on a fresh machine, then does its job.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= laptop
# the image data: ../shared/data where it sits beside the checkout, else data/ (see data/README.md)
DATA    ?= $(if $(wildcard ../shared/data),../shared/data,data)
BIN     := $(VENV)/bin

.PHONY: install reproduce test book

install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

reproduce: install
	$(BIN)/asintrovae-reproduce --profile $(PROFILE) --data-root $(DATA)

test: install
	OMP_NUM_THREADS=1 MPLBACKEND=Agg PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# the book: every chapter executed and rendered to _book/ (offline HTML; see tools/build_book.py)
book: install
	$(BIN)/python tools/build_book.py --data-root $(DATA)
