r"""Execution time of each chapter of the book, and of the whole build.

What it reports. Jupyter Book executes every chapter through myst-nb's ``cache`` mode, which
stores each executed notebook in a jupyter-cache database (``_build/.jupyter_cache``) together
with its ``execution_seconds``. This script reads that database and prints one row per chapter
(seconds, share of the total), sorted as the chapters' paths sort, then the summed execution
time. The design's targets: a cold build under 10 minutes on 2 CPU cores, each chapter under
about 30 s.

Given a command after ``--``, it first runs that command (the book build), times it with
``time.perf_counter`` and adds the build's wall-clock total to the table; it exits with the
command's exit code, so ``make book`` fails exactly when the build does::

    .venv/bin/python benchmarks/book_timings.py                  # table of the last build
    .venv/bin/python benchmarks/book_timings.py -- .venv/bin/jupyter-book build . --all -W -n
    .venv/bin/python benchmarks/book_timings.py --cache /tmp/b/_build/.jupyter_cache
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_cache import get_cache

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "_build" / ".jupyter_cache"
CHAPTER_BUDGET_SECONDS = 30.0


@dataclass(frozen=True)
class ChapterTime:
    chapter: str  # the source path, relative to the repository when it lies inside it
    seconds: float


def chapter_times(cache_path: Path) -> list[ChapterTime]:
    """Execution seconds of every notebook recorded in the jupyter-cache at ``cache_path``."""
    if not (cache_path / "global.db").is_file():
        raise FileNotFoundError(f"no jupyter-cache at {cache_path}: build the book first")
    times = []
    for record in get_cache(str(cache_path)).list_cache_records():
        source = Path(record.uri)
        chapter = source.relative_to(ROOT).as_posix() if source.is_relative_to(ROOT) else record.uri
        times.append(ChapterTime(chapter, float(record.data.get("execution_seconds", "nan"))))
    return sorted(times, key=lambda time_: time_.chapter)


def format_table(times: list[ChapterTime], build_seconds: float | None) -> str:
    total = sum(time_.seconds for time_ in times)
    width = max([len("whole build (wall clock)"), *(len(time_.chapter) for time_ in times)])
    lines = [f"{'chapter':<{width}}  {'seconds':>8}  {'share':>6}", "-" * (width + 18)]
    for time_ in times:
        share = time_.seconds / total if total > 0 else 0.0
        flag = "  over budget" if time_.seconds > CHAPTER_BUDGET_SECONDS else ""
        lines.append(f"{time_.chapter:<{width}}  {time_.seconds:8.1f}  {share:6.1%}{flag}")
    lines.append("-" * (width + 18))
    lines.append(f"{'execution, all chapters':<{width}}  {total:8.1f}")
    if build_seconds is not None:
        lines.append(f"{'whole build (wall clock)':<{width}}  {build_seconds:8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    options = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="jupyter-cache folder")
    args = parser.parse_args(options)
    build_seconds = None
    if command:
        start = time.perf_counter()
        returncode = subprocess.run(command, check=False).returncode
        build_seconds = time.perf_counter() - start
        if returncode != 0:
            print(f"build failed (exit {returncode}) after {build_seconds:.1f} s", file=sys.stderr)
            return returncode
    print(format_table(chapter_times(args.cache), build_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
