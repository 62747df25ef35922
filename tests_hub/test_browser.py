"""A student in headless Chromium on the real course hub: JupyterLab, the Assignments tab, submit.

Chromium is launched as ``make check-book`` launches it (Debian's ``/usr/bin/chromium``, a fresh
profile, the network cut off but loopback). The student logs in on the hub's login page, opens
Nbgrader > Assignment List, fetches assignment 01, opens its notebook, runs its first code cell
(it imports ``nf_course`` from the course environment), validates, saves and submits, then opens
a chapter from the book's launch link. A screenshot of each step goes to
``_build/screenshots/hub/``; any console error, uncaught page error or failed request fails
the test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ASSIGNMENT, STUDENTS, timed
from hubtest import COURSE, REPOSITORY, CourseHub
from playwright.sync_api import Page, Request, expect, sync_playwright

from hub import book

pytestmark = pytest.mark.timeout(900)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPOSITORY / "_build" / "screenshots" / "hub"
STUDENT = STUDENTS[2]
CHAPTER = "book/02_change_of_variables.md"
# The flags of tests_book/test_html.py: headless as root, no background traffic, and every
# address but loopback sent to a dead proxy.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LONG = 180_000  # ms: a server start or a kernel's first import of torch on a busy machine


@pytest.fixture
def page() -> Iterator[Page]:
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"no Chromium at {CHROMIUM}: `apt-get install chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def _navigated_away(request: Request) -> bool:
    """The spawn page's progress stream, which the browser cancels when the page moves on to the
    started server: a navigation, not a failed request."""
    return request.url.split("?")[0].endswith("/server/progress") and (
        request.failure == "net::ERR_ABORTED"
    )


def watch(page: Page) -> list[str]:
    """Console errors, uncaught errors and failed requests of ``page``, as they happen."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: m.type == "error" and problems.append(f"console error: {m.text} at {m.location}"),
    )
    page.on("pageerror", lambda error: problems.append(f"uncaught {error}"))
    page.on(
        "requestfailed",
        lambda r: _navigated_away(r) or problems.append(f"failed {r.url} ({r.failure})"),
    )
    return problems


def shot(page: Page, number: int, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{number:02d}-{name}.png")


def menu(page: Page, *labels: str) -> None:
    for label in labels:
        page.get_by_role("menuitem", name=label, exact=True).click()


def test_a_student_fetches_runs_validates_and_submits_in_jupyterlab(
    course_hub: CourseHub, page: Page
) -> None:
    problems = watch(page)
    hub = course_hub
    with timed("browser: log in, JupyterLab opens"):
        page.goto(f"{hub.url}/hub/login")
        expect(page.locator("#username_input")).to_be_visible()
        shot(page, 1, "login")
        page.fill("#username_input", STUDENT)
        page.fill("#password_input", hub.passwords[STUDENT])
        page.click("#login_submit")
        page.wait_for_url(re.compile(rf"/user/{STUDENT}/lab"), timeout=LONG)
        expect(page.get_by_role("menuitem", name="Nbgrader", exact=True)).to_be_visible(
            timeout=LONG
        )
        shot(page, 2, "jupyterlab")
    with timed("browser: Assignments tab, fetch"):
        menu(page, "Nbgrader", "Assignment List")
        released = page.locator("#released_assignments_list")
        expect(released.get_by_text(ASSIGNMENT)).to_be_visible(timeout=60_000)
        # Students get no formgrader and no create-assignment.
        page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
        assert page.get_by_role("menuitem", name="Formgrader", exact=True).count() == 0
        assert page.get_by_role("menuitem", name="Create assignment").count() == 0
        page.keyboard.press("Escape")
        shot(page, 3, "assignments-tab")
        released.get_by_role("button", name="Fetch").click()
        fetched = page.locator("#fetched_assignments_list")
        unfold = fetched.get_by_role("button", name=ASSIGNMENT)
        expect(unfold).to_be_visible(timeout=60_000)
        shot(page, 4, "fetched")
    with timed("browser: open the notebook, run a cell"):
        unfold.click()  # shows the assignment's notebooks
        fetched.locator(f"#nbgrader-{COURSE}-{ASSIGNMENT}").get_by_text(ASSIGNMENT).click()
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(
            notebook.get_by_role("heading", name="Assignment 01: the change of variables")
        ).to_be_visible(timeout=60_000)
        expect(notebook.locator(".jp-Toolbar-kernelName")).to_have_text(
            re.compile("Python 3"), timeout=LONG
        )
        shot(page, 5, "notebook")
        first_code = notebook.locator(".jp-CodeCell").first
        first_code.locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        expect(first_code.locator(".jp-InputArea-prompt")).to_have_text(
            re.compile(r"\[1\]"), timeout=LONG
        )
        assert first_code.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        shot(page, 6, "cell-run")
    with timed("browser: validate, save, submit"):
        notebook.get_by_role("button", name="Validate").click()
        dialog = page.locator(".jp-Dialog")
        # The untouched notebook fails its first visible test, and Validate says so.
        expect(dialog.get_by_text("The following cell failed").first).to_be_visible(timeout=LONG)
        shot(page, 7, "validate")
        dialog.get_by_role("button").last.click()
        page.keyboard.press("Control+s")
        page.get_by_role("tab", name="Assignments").click()
        fetched.get_by_role("button", name="Submit").click()
        submitted = page.locator("#submitted_assignments_list")
        expect(submitted.get_by_text(ASSIGNMENT)).to_be_visible(timeout=60_000)
        shot(page, 8, "submitted")
    with timed("browser: a chapter from the book's launch link"):
        page.goto(book.launch_url(hub.settings, CHAPTER))
        page.wait_for_url(re.compile(r"/lab/tree/"), timeout=LONG)
        # The chapter's tab, opened as a notebook (jupytext), with the chapter's title.
        expect(page.get_by_role("tab", name=Path(CHAPTER).name)).to_be_visible(timeout=LONG)
        chapter = page.locator(".jp-NotebookPanel:visible")
        expect(
            chapter.get_by_role("heading", name="Change of variables", exact=True)
        ).to_be_visible(timeout=LONG)
        shot(page, 9, "chapter-from-the-book")
    assert not problems, "\n".join(problems)
