# nf-course: one command per job. Each works on a fresh machine from a clean clone:
# it creates the virtual environment .venv on first use (torch==2.13.0 first, the CPU
# wheel; an unpinned torch would pull a multi-GB CUDA build), then runs the job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup book check-book test lint clean assignments autograde feedback grades

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python book/_ext/offline_html.py  # MathJax for the offline book (pinned, checksummed)
	touch $(STAMP)

## Build the HTML book into _build/html, executing every chapter (clean build, warnings fail);
## then print each chapter's execution time and the build's total.
book: $(STAMP)
	rm -rf _build
	$(BIN)/python benchmarks/book_timings.py -- $(BIN)/jupyter-book build . --all -W -n --keep-going

## Open every page of the built book (make book first) in headless Chromium with the network
## cut off; screenshots of each chapter go to _build/screenshots/. Installs Chromium if missing.
check-book: $(STAMP)
	@command -v $${CHROMIUM:-/usr/bin/chromium} >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest tests_book

## Run the test suite.
test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --nbval-lax solutions  # every reference solution passes its tests

## Instructors: write exercises/ from solutions/ (nbgrader generate_assignment, all assignments).
assignments: $(STAMP)
	$(BIN)/python -m nf_course.instructor generate

## Instructors: autograde grading/submitted/*/$(ASSIGNMENT)/, student by student.
autograde: $(STAMP)
	$(BIN)/python -m nf_course.instructor autograde $(ASSIGNMENT)

## Instructors: HTML feedback for $(ASSIGNMENT) in grading/feedback/ (hidden tests removed).
feedback: $(STAMP)
	$(BIN)/python -m nf_course.instructor feedback $(ASSIGNMENT)

## Instructors: every grade, with the reason of each failed autograding, in grading/grades.csv.
grades: $(STAMP)
	$(BIN)/python -m nf_course.instructor grades

## Lint and check formatting.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf _build .pytest_cache .ruff_cache
