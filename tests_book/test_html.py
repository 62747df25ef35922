"""Every page of the built book, opened offline in headless Chromium as a reader would.

Run after the book is built (``make book``), as its own pytest invocation: ``make check-book``,
or ``.venv/bin/python -m pytest tests_book``. These tests live outside ``tests/`` (the default
``testpaths``) because they need a built book and a browser, which the unit tests do not; kept in
their own folder, they can never be skipped silently nor slow down ``make test``.

The network is cut off twice over: Chromium is pointed at a dead proxy (loopback is exempt, so
the book's own local server is reachable) and every request that leaves the book's origin is
aborted by a Playwright route and recorded as a failure. Each page is opened both from a local
HTTP server (an intranet JupyterHub) and from ``file://`` (a laptop on a train). A page fails on:
formulas that MathJax did not typeset or typeset with errors (undefined macros included), raw
TeX left in the text, images that did not load, MathJax fonts that did not load, failed or
refused requests, and console errors. Screenshots of the first screen of each chapter go to
``_build/screenshots/`` for a human to look at.

Environment: ``NF_BOOK_HTML`` (default ``_build/html``), ``CHROMIUM`` (default
``/usr/bin/chromium``, Debian's package, installed by ``make check-book``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("NF_BOOK_HTML", ROOT / "_build" / "html")).resolve()
SCREENSHOT_DIR = HTML_DIR.parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NOT_PAGES = {"_static", "_sources", "_images", "_sphinx_design_static", "screenshots"}
VIEWPORT = {"width": 1280, "height": 860}
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--proxy-server={DEAD_PROXY}",  # loopback bypasses proxies, everything else dies here
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# TeX that escaped MathJax: a control word, \( \) \[ \] delimiters, $$, or a $...$ pair holding
# TeX syntax. Prose never contains these; code and cell outputs are not scanned.
RAW_TEX = re.compile(r"\\[A-Za-z]+|\\[()[\]]|\$\$|\$[^$\n]*[\\^_{}][^$\n]*\$")

# Runs in the page: waits for MathJax's first typeset and for web fonts, then reports problems.
INSPECT_JS = """
async () => {
  const report = {typeset: 0, mathElements: 0, untypeset: [], texErrors: [], rawTex: [],
                  brokenImages: [], brokenFonts: [], mathjax: null};
  const math = document.querySelectorAll(".math");
  report.mathElements = math.length;
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
    report.mathjax = window.MathJax.version;
    for (const item of window.MathJax.startup.document.math) {
      report.typeset += 1;
      const mml = window.MathJax.startup.toMML(item.root);
      if (/<merror|mathcolor="red"/.test(mml)) report.texErrors.push(item.math.slice(0, 120));
    }
  }
  for (const element of math) {
    if (!element.querySelector("mjx-container")) {
      report.untypeset.push(element.textContent.trim().slice(0, 120));
    }
  }
  const skip = "pre, code, script, style, textarea, mjx-container, .cell_output, .output";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawTex = new RegExp(RAW_TEX_SOURCE);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (parent && !parent.closest(skip) && rawTex.test(node.textContent)) {
      report.rawTex.push(node.textContent.trim().slice(0, 120));
    }
  }
  for (const image of Array.from(document.images)) {
    image.loading = "eager";
    try { await image.decode(); } catch (error) { /* reported below */ }
    if (!image.complete || image.naturalWidth === 0) {
      report.brokenImages.push(image.getAttribute("src"));
    }
  }
  await document.fonts.ready;
  for (const font of document.fonts) {
    if (font.status === "error") report.brokenFonts.push(font.family);
  }
  return report;
}
""".replace("RAW_TEX_SOURCE", repr(RAW_TEX.pattern))


def built_pages() -> list[str]:
    """Every HTML page of the build, as paths relative to ``HTML_DIR``."""
    if not (HTML_DIR / "index.html").is_file():
        raise FileNotFoundError(
            f"no built book in {HTML_DIR}: build it first (`make book`), or point NF_BOOK_HTML "
            "at the html folder of a build"
        )
    pages = [
        path.relative_to(HTML_DIR).as_posix()
        for path in HTML_DIR.rglob("*.html")
        if not NOT_PAGES & set(path.relative_to(HTML_DIR).parts)
    ]
    return sorted(pages)


def chapter_pages() -> list[str]:
    """The pages that are chapters of the book (their screenshots are saved)."""
    return [page for page in built_pages() if page.startswith("book/")]


def redirect_target(page: str) -> str | None:
    """The page a ``<meta http-equiv="refresh">`` page sends the reader to, if it is one."""
    text = (HTML_DIR / page).read_text(encoding="utf-8")
    match = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)"', text, flags=re.IGNORECASE)
    return match.group(1) if match else None


@dataclass
class Traffic:
    """What the browser tried to do during one page visit, beyond what the page itself shows."""

    blocked: list[str] = field(default_factory=list)  # requests that left the book's origin
    failed: list[str] = field(default_factory=list)  # local requests that failed or got >= 400
    console_errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"request to the network (blocked): {url}" for url in self.blocked]
            + [f"failed local request: {entry}" for entry in self.failed]
            + [f"console error: {message}" for message in self.console_errors]
        )


def is_local(url: str, origin: str) -> bool:
    return url.startswith((origin, "file://", "data:", "blob:", "about:"))


def watch(page: Page, origin: str) -> Traffic:
    """Cut ``page`` off from everything but ``origin`` and record what it tries to load."""
    traffic = Traffic()

    def route(route: Route) -> None:
        if is_local(route.request.url, origin):
            route.continue_()
        else:
            traffic.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def request_failed(request: Request) -> None:
        if is_local(request.url, origin):
            traffic.failed.append(f"{request.url} ({request.failure})")

    page.route("**/*", route)
    page.on("requestfailed", request_failed)
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and traffic.failed.append(f"{response.url} (HTTP {response.status})")
        ),
    )
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and traffic.console_errors.append(f"{message.text} at {message.location.get('url')}")
        ),
    )
    page.on("pageerror", lambda error: traffic.console_errors.append(f"uncaught {error}"))
    return traffic


def inspect(page: Page) -> list[str]:
    """Problems a reader would see on the page currently open in ``page``."""
    report = page.evaluate(INSPECT_JS)
    problems = []
    if report["mathElements"] and report["mathjax"] is None:
        problems.append(f"MathJax did not load; {report['mathElements']} formulas stay raw TeX")
    problems += [f"formula not typeset: {tex}" for tex in report["untypeset"]]
    problems += [f"MathJax error in formula: {tex}" for tex in report["texErrors"]]
    problems += [f"raw TeX in the text: {text!r}" for text in report["rawTex"]]
    problems += [f"image did not load: {src}" for src in report["brokenImages"]]
    problems += [f"font did not load: {family}" for family in report["brokenFonts"]]
    return problems


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def server_origin() -> Iterator[str]:
    """A local HTTP server for the built book, as an intranet JupyterHub would serve it."""
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make check-book does it), "
            "or set CHROMIUM to its path"
        )
    # Playwright starts Chromium with a fresh, empty profile (a new --user-data-dir) every time.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    page = context.new_page()
    yield page
    context.close()


def visit(page: Page, url: str, target: str | None) -> None:
    page.goto(url, wait_until="load")
    if target is not None:
        page.wait_for_url(re.compile(re.escape(target.split("#")[0]) + "$"))
        page.wait_for_load_state("load")


@pytest.mark.parametrize("scheme", ["http", "file"])
@pytest.mark.parametrize("page_path", built_pages())
def test_page_renders_offline(page: Page, server_origin: str, page_path: str, scheme: str) -> None:
    origin = server_origin if scheme == "http" else HTML_DIR.as_uri()
    traffic = watch(page, origin)
    target = redirect_target(page_path)
    if target is not None:
        assert (HTML_DIR / Path(page_path).parent / target.split("#")[0]).is_file(), target
    visit(page, f"{origin}/{page_path}", target)
    problems = inspect(page) + traffic.problems()
    if scheme == "http" and page_path in chapter_pages():
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT_DIR / (Path(page_path).stem + ".png"))
    assert not problems, f"{scheme}: {page_path}:\n  " + "\n  ".join(problems)


def test_search_finds_a_chapter_offline(page: Page, server_origin: str) -> None:
    """The search page works from the local copy (its index is a local script)."""
    traffic = watch(page, server_origin)
    visit(page, f"{server_origin}/search.html?q=flow", None)
    page.wait_for_selector("#search-results li", timeout=15_000)
    assert page.locator("#search-results li").count() > 0
    assert not traffic.problems(), traffic.problems()


# The checks above must be able to fail: show each one catching what it is there to catch.


def test_guard_blocks_and_records_a_cdn_request(page: Page, server_origin: str) -> None:
    traffic = watch(page, server_origin)
    visit(page, f"{server_origin}/genindex.html", None)
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    fetched = page.evaluate("url => fetch(url).then(() => 'loaded', () => 'failed')", cdn)
    assert fetched == "failed"
    assert traffic.blocked == [cdn]


def test_dead_proxy_alone_cuts_the_network_off(page: Page) -> None:
    # No route installed here: only Chromium's own flags stand between the page and the web.
    page.goto("about:blank")
    outcome = page.evaluate(
        "() => fetch('http://example.com/').then(() => 'reached', e => 'failed: ' + e.message)"
    )
    assert outcome.startswith("failed"), outcome


def test_inspection_reports_raw_tex_and_missing_images(page: Page) -> None:
    page.set_content(
        '<p class="math">\\(x^2\\)</p><p>density $p_X(x)$ and \\(\\abs{x}\\)</p>'
        '<pre>print("$x_1$ in code is fine")</pre><img src="missing.png">'
    )
    problems = inspect(page)
    assert any(p.startswith("formula not typeset: \\(x^2\\)") for p in problems), problems
    assert any(p.startswith("raw TeX in the text: 'density $p_X(x)$") for p in problems), problems
    assert any(p == "image did not load: missing.png" for p in problems), problems
    assert not any("in code is fine" in p for p in problems), problems


def test_inspection_reports_undefined_macros(page: Page, server_origin: str) -> None:
    visit(page, f"{server_origin}/{chapter_with_math()}", None)
    page.evaluate(
        """async () => {
             const p = document.createElement('p');
             p.className = 'math';
             p.textContent = '\\\\(\\\\notamacro{x} + \\\\abs{x}\\\\)';
             document.body.append(p);
             await MathJax.typesetPromise([p]);
           }"""
    )
    problems = inspect(page)
    assert problems == ["MathJax error in formula: \\notamacro{x} + \\abs{x}"], problems


def chapter_with_math() -> str:
    for page in chapter_pages():
        if 'class="math' in (HTML_DIR / page).read_text(encoding="utf-8"):
            return page
    raise AssertionError("no chapter of the book has a formula")
