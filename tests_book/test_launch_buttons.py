"""The built book's JupyterHub launch buttons open the chapter on the course hub.

Each chapter's button must carry exactly the link that ``hub.book.launch_url`` builds (the one
the hub tests follow to land the chapter as a notebook in a student's server). Needs a built
book (``make book``), like the other tests of ``tests_book``.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from test_html import HTML_DIR, chapter_pages  # noqa: E402

from hub import book, settings  # noqa: E402

LINK = re.compile(r'href="([^"]*/hub/user-redirect/git-pull\?[^"]*)"')


@pytest.mark.parametrize("page", chapter_pages())
def test_the_launch_button_opens_the_chapter_on_the_course_hub(page: str) -> None:
    links = {html.unescape(link) for link in LINK.findall((HTML_DIR / page).read_text())}
    source = Path(page).with_suffix(".md").as_posix()
    assert links == {book.launch_url(settings.load(settings.DEFAULT_CONFIG), source)}
