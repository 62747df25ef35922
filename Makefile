# nf-course: one command per job. Each works on a fresh machine from a clean clone:
# it creates the virtual environment .venv on first use (torch==2.13.0 first, the CPU
# wheel; an unpinned torch would pull a multi-GB CUDA build), then runs the job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup bubblewrap book check-book test lint clean assignments autograde feedback grades \
	hub-setup hub-install hub hub-stop hub-status hub-students hub-release hub-collect \
	hub-autograde hub-feedback check-hub

setup: $(STAMP) bubblewrap

## bubblewrap (bwrap) confines each autograded notebook (README, "Grading in a sandbox"); it is
## installed with apt-get when missing (as root, or with sudo).
bubblewrap:
	@command -v bwrap >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq bubblewrap; }

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

## Run the test suite (the grading tests need bubblewrap).
test: $(STAMP) bubblewrap
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --nbval-lax solutions  # every reference solution passes its tests

## Instructors: write exercises/ from solutions/ (nbgrader generate_assignment, all assignments).
assignments: $(STAMP)
	$(BIN)/python -m nf_course.instructor generate

## Instructors: autograde grading/submitted/*/$(ASSIGNMENT)/, student by student, $(JOBS) at a
## time, each notebook in a sandbox.
JOBS ?= 1
autograde: $(STAMP) bubblewrap
	$(BIN)/python -m nf_course.instructor autograde $(ASSIGNMENT) --jobs $(JOBS)

## Instructors: HTML feedback for $(ASSIGNMENT) in grading/feedback/ (hidden tests removed).
feedback: $(STAMP)
	$(BIN)/python -m nf_course.instructor feedback $(ASSIGNMENT)

## Instructors: every grade, with the reason of each failed autograding, in grading/grades.csv.
grades: $(STAMP)
	$(BIN)/python -m nf_course.instructor grades

## The course hub (README, "Instructors: the course hub"); run as root. Settings: hub/course_hub.toml.
HUB := $(BIN)/python -m hub

## Install what the hub needs (apt packages, configurable-http-proxy, the students' course
## environment), prepare the course and the exchange, add the roster's students.
hub-setup: $(STAMP) bubblewrap
	$(HUB) setup

## Only the machine's part of hub-setup (what the hub tests need).
hub-install: $(STAMP)
	$(HUB) install

## Start the hub in the background (http://127.0.0.1:8000 by default); stop it cleanly.
hub: $(STAMP)
	$(HUB) start

hub-stop: $(STAMP)
	$(HUB) stop

hub-status: $(STAMP)
	$(HUB) status

## Accounts for the students of the roster (hub/roster.csv by default), all or nothing.
hub-students: $(STAMP)
	$(HUB) students

## Release $(ASSIGNMENT) to the students; collect their latest submissions.
hub-release: $(STAMP)
	$(HUB) release $(ASSIGNMENT)

hub-collect: $(STAMP)
	$(HUB) collect $(ASSIGNMENT)

## Autograde the collected submissions with the instructor tool, on the hub's course.
hub-autograde: $(STAMP) bubblewrap
	$(BIN)/python -m nf_course.instructor --root "$$($(HUB) course-root)" autograde $(ASSIGNMENT)
	$(HUB) chown

## Generate the feedback (hidden tests removed) and release it to the students.
hub-feedback: $(STAMP)
	$(BIN)/python -m nf_course.instructor --root "$$($(HUB) course-root)" feedback $(ASSIGNMENT)
	$(HUB) return-feedback $(ASSIGNMENT)

## The hub tests, as root: settings, rosters, the round trip on a real hub, JupyterLab in
## Chromium (screenshots in _build/screenshots/hub/). Installs the course environment first.
check-hub: hub-install
	@command -v $${CHROMIUM:-/usr/bin/chromium} >/dev/null || { \
	  apt-get update -qq && apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest tests_hub

## Lint and check formatting.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf _build .pytest_cache .ruff_cache
