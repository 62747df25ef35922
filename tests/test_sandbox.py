"""The grading sandbox (``nf_course.sandbox``): real sandboxed kernels, then the instructor tool.

Each test starts an ipykernel through ``SandboxedKernelManager`` (bubblewrap; these tests need
it, as grading does), runs cells as a hostile student would, and checks what the host sees:
files not read nor written, no connection, limits that hold, and no process of the sandbox left
once the kernel is shut down. The last tests grade an assignment end to end with the sandbox on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nbformat
import nbgrader_course as course
import psutil
import pytest

import nf_course.checks as checks
from nf_course import sandbox
from nf_course.sandbox import SandboxedKernelManager
from nf_course.tamper import read_flags

pytestmark = pytest.mark.timeout(600)


@contextlib.asynccontextmanager
async def sandboxed_kernel(cwd: str | None = None, **traits: object) -> AsyncIterator:
    """A started sandboxed kernel and its client; on exit, shut down (killed), and every process
    of the sandbox must be gone."""
    manager = SandboxedKernelManager(kernel_name="python3", **traits)
    await manager.start_kernel(cwd=cwd, extra_arguments=["--HistoryManager.hist_file=:memory:"])
    client = manager.client()
    client.start_channels()
    outer = psutil.Process(manager.provisioner.process.pid)
    family = [outer, *outer.children(recursive=True)]
    uid = manager._kernel.uids().real
    try:
        await client.wait_for_ready(timeout=60)
        yield manager, client
    finally:
        family += [p for p in outer.children(recursive=True) if p not in family]
        client.stop_channels()
        stopped = time.time()
        await manager.shutdown_kernel(now=True)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"still running after shutdown: {alive}"
        if uid != os.getuid():  # (a later sandbox, of another test run, may have that uid now)
            left = [
                p
                for p in psutil.process_iter(["uids", "create_time"])
                if p.info["uids"].real == uid and p.info["create_time"] < stopped
            ]
            assert not left, f"processes of the sandbox uid {uid} survive: {left}"


async def execute(client, code: str, timeout: float = 120) -> tuple[str, str | None]:
    """Run one cell; return its printed text and the name of the exception it raised."""
    text: list[str] = []

    def collect(message: dict) -> None:
        if message["msg_type"] == "stream":
            text.append(message["content"]["text"])

    reply = await client.execute_interactive(code, timeout=timeout, output_hook=collect)
    return "".join(text), reply["content"].get("ename")


def run(cells: list[str], cwd: str | None = None, **traits: object) -> list[tuple[str, str | None]]:
    """Run ``cells`` one after the other in a fresh sandboxed kernel."""

    async def main() -> list[tuple[str, str | None]]:
        async with sandboxed_kernel(cwd, **traits) as (_, client):
            return [await execute(client, cell) for cell in cells]

    return asyncio.run(main())


@pytest.fixture()
def fake_course() -> Iterator[Path]:
    """A course laid out as grading has it, world-readable (so that only the sandbox keeps the
    kernel out), with a student ``alice`` being autograded and a file only root may read."""
    root = Path(tempfile.mkdtemp(prefix="nf-sandbox-course-"))
    files = {
        "solutions/01_a/01_a.ipynb": "REFERENCE SOLUTION",
        "grading/gradebook.db": "GRADEBOOK",
        "grading/submitted/bob/01_a/01_a.ipynb": "BOB'S ANSWERS",
        "grading/autograded/alice/01_a/01_a.ipynb": "HIDDEN TESTS RESTORED",
        "grading/autograded/alice/01_a/data/points.csv": "1,2",
        "shared/public.txt": "public",
        "shared/secret.txt": "root only",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for folder, _, names in os.walk(root):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(root / "shared/secret.txt", 0o600)
    yield root
    shutil.rmtree(root)


def test_torch_and_nf_course_run_in_the_sandbox_with_a_clean_environment(monkeypatch) -> None:
    monkeypatch.setenv("NF_COURSE_INSTRUCTOR_SECRET", "s3cret")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    (checked, error), (env, _) = run(
        [
            "import torch\nfrom nf_course.bijectors import AffineCoupling\n"
            "from nf_course.checks import check_bijector\ntorch.manual_seed(0)\n"
            "check_bijector(AffineCoupling(2), torch.randn(16, 2))\nprint('checked')",
            "import os, json\nprint(json.dumps(dict(os.environ)))",
        ]
    )
    assert (checked, error) == ("checked\n", None)
    assert "s3cret" not in env and "NF_COURSE_INSTRUCTOR_SECRET" not in env
    assert '"NBGRADER_EXECUTION": "autograde"' in env
    assert '"OMP_NUM_THREADS": "1"' in env and '"HOME": "/tmp/home"' in env


def test_the_kernel_reads_only_its_own_submission(fake_course: Path) -> None:
    alice = fake_course / "grading/autograded/alice/01_a"
    secrets = [
        fake_course / "solutions/01_a/01_a.ipynb",
        fake_course / "grading/gradebook.db",
        fake_course / "grading/submitted/bob/01_a/01_a.ipynb",
        alice / "01_a.ipynb",
    ]
    probe = "\n".join(
        [
            "import os",
            "def attempt(path):",
            "    try:",
            "        return open(path).read()",
            "    except OSError as error:",
            "        return type(error).__name__",
            "print(os.getuid(), sorted(os.listdir('.')), attempt('data/points.csv'))",
            f"print([attempt(p) for p in {[str(p) for p in secrets]!r}])",
            f"print(attempt({str(fake_course / 'shared/public.txt')!r}))",
            f"print(attempt({str(fake_course / 'shared/secret.txt')!r}))",
        ]
    )
    ((text, error),) = run([probe], cwd=str(alice), extra_read_only=[str(fake_course / "shared")])
    assert error is None, text
    first, second, public, secret = text.splitlines()
    assert not first.startswith("0 ")  # a real unprivileged uid, even though root started it
    assert first.endswith("['data'] 1,2"), first  # its own files, not the notebook
    assert second == str(["FileNotFoundError"] * len(secrets))
    assert public == "public"
    assert secret == "PermissionError"  # bound into the sandbox, but 0600 root


def test_nothing_written_in_the_sandbox_reaches_the_host(fake_course: Path) -> None:
    alice = fake_course / "grading/autograded/alice/01_a"
    package = Path(sandbox.__file__).parent
    checker = Path(checks.__file__).read_text()
    targets = [fake_course / "evil.txt", alice / "evil.txt", package / "evil.py", Path("evil.txt")]
    cell = "\n".join(
        [
            "import os, errno",
            "for path in " + repr([str(p) for p in targets]) + ":",
            "    try:",
            "        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)",
            "        open(path, 'w').write('x')",
            "        print('wrote', path)",
            "    except OSError as error:",
            "        print(errno.errorcode[error.errno], path)",
            "import nf_course.checks as checks",
            "try:",
            "    open(checks.__file__, 'a').write('# edited')",
            "except OSError as error:",
            "    print(errno.errorcode[error.errno], 'checks')",
        ]
    )
    ((text, error),) = run([cell], cwd=str(alice))
    assert error is None, text
    assert f"EROFS {package / 'evil.py'}" in text  # the package is mounted read-only
    assert "EACCES checks" in text or "EROFS checks" in text  # not the user's, and read-only
    for target in targets[:3]:
        assert not target.exists(), target
    assert Path(checks.__file__).read_text() == checker
    assert sorted(p.name for p in alice.iterdir()) == ["01_a.ipynb", "data"]


def test_no_network_not_even_the_hosts_loopback() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    cell = "\n".join(
        [
            "import socket",
            f"for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:",
            "    try:",
            "        socket.create_connection(address, timeout=5)",
            "        print('connected', address)",
            "    except OSError as error:",
            "        print(type(error).__name__)",
        ]
    )
    with listener:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # reachable from here
        ((text, error),) = run([cell])
    assert error is None
    assert "connected" not in text
    assert len(text.splitlines()) == 2


def test_no_user_namespace_so_no_tmpfs_of_its_own() -> None:
    cell = "\n".join(
        [
            "import ctypes, os, subprocess",
            "libc = ctypes.CDLL(None, use_errno=True)",
            "print(libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))",  # CLONE_NEWUSER
            "print(subprocess.run(['unshare', '-Urm', 'true'], capture_output=True).returncode)",
        ]
    )
    ((text, error),) = run([cell])
    assert error is None, text
    assert text == "-1 Operation not permitted\n1\n"


def test_a_fork_bomb_stops_at_the_process_limit() -> None:
    limit = 48
    bomb = "\n".join(
        [
            "import os, time",
            "children = []",
            "try:",
            "    while len(children) < 10_000:",
            "        pid = os.fork()",
            "        if pid == 0:",
            "            time.sleep(600)",
            "            os._exit(0)",
            "        children.append(pid)",
            "except OSError as error:",
            "    print(len(children), type(error).__name__)",
        ]
    )
    (forked, error), (alive, _) = run([bomb, "print('alive')"], processes=limit)
    assert error is None
    count, name = forked.split()
    assert 0 < int(count) < limit and name == "BlockingIOError"
    assert alive == "alive\n"  # the kernel itself still answers


def test_a_huge_allocation_raises_memory_error() -> None:
    size = SandboxedKernelManager.memory_bytes.default_value + (1 << 30)
    ((_, error),) = run([f"block = bytearray({size})"])
    assert error == "MemoryError"


def test_the_disk_is_a_small_private_tmpfs() -> None:
    disk, largest = 24 << 20, 6 << 20
    cell = "\n".join(
        [
            "import errno, os",
            "chunk = b'x' * (1 << 20)",
            "def fill(path, chunks):",
            "    written = 0",
            "    try:",
            "        with open(path, 'wb') as handle:",
            "            for _ in range(chunks):",
            "                handle.write(chunk)",
            "                handle.flush()",
            "                written += 1",
            "    except OSError as error:",
            "        return written, errno.errorcode[error.errno]",
            "    return written, None",
            "print(fill('big', 100))",
            "os.remove('big')",
            "total, code = 0, None",
            "for index in range(100):",
            "    written, code = fill(f'part{index}', 5)",
            "    total += written",
            "    if code:",
            "        break",
            "print(total, code)",
        ]
    )
    ((text, error),) = run([cell], disk_bytes=disk, file_bytes=largest)
    assert error is None, text
    big, filled = text.splitlines()
    assert big == "(6, 'EFBIG')"  # one file stops at the file size limit
    total, code = filled.split()
    assert code == "ENOSPC" and 18 <= int(total) <= 24  # all files stop at the disk size


def test_interrupts_reach_the_sandboxed_kernel_and_shutdown_kills_what_ignores_them() -> None:
    hang = "import time\nwhile True:\n    time.sleep(0.05)"
    deaf = (
        "import os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if os.fork() == 0:\n    while True:\n        time.sleep(0.05)\n"
        "while True:\n    time.sleep(0.05)"
    )

    async def main() -> None:
        async with sandboxed_kernel() as (manager, client):
            client.execute(hang)
            await asyncio.sleep(2)
            await manager.interrupt_kernel()
            reply = await client.get_shell_msg(timeout=20)
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            client.execute(deaf)
            await asyncio.sleep(2)
            await manager.interrupt_kernel()
            with pytest.raises(queue.Empty):
                await client.get_shell_msg(timeout=5)
            assert len(manager._kernel.children()) == 1  # its child, still running
        # leaving the context kills the kernel and its child, and checks that nothing is left

    asyncio.run(main())


def test_a_missing_bwrap_stops_grading_with_instructions(tmp_path: Path) -> None:
    root = course.make_course(tmp_path / "course", [])
    env = {**course.nbgrader_env(), "PATH": str(Path(sys.executable).parent)}  # no bwrap there

    def autograde(*options: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "nf_course.instructor", "--root", str(root)]
        command += ["autograde", "01_change_of_variables", *options]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    stopped = autograde()
    assert stopped.returncode != 0
    assert "apt-get install bubblewrap" in stopped.stderr
    assert "--no-sandbox" in stopped.stderr
    unconfined = autograde("--no-sandbox")
    assert unconfined.returncode == 0, unconfined.stderr
    assert "WARNING: --no-sandbox" in unconfined.stderr


SNOOP = """import os
def _snoop():
    root = {root!r}
    for path in [root + '/solutions/{assignment}/{assignment}.ipynb',
                 root + '/grading/gradebook.db', root + '/nbgrader_config.py']:
        try:
            print(open(path).read()[:20000])
        except OSError as error:
            print('blocked', type(error).__name__)
    for path in [root + '/pwned.txt', os.path.dirname(__import__('nf_course').__file__) + '/x.py']:
        try:
            open(path, 'w').write('pwned')
        except OSError as error:
            print('blocked', type(error).__name__)
_snoop()
"""


def test_the_instructor_tool_grades_in_the_sandbox(tmp_path: Path) -> None:
    """The reference solution gets full marks; a student who also tries to read the solutions
    and the gradebook, and to write into the course and the package, reads and writes nothing
    (and is flagged for review): graded two at a time (``--jobs 2``)."""
    assignment = "01_change_of_variables"
    root = course.make_course(tmp_path / "course", [assignment])
    assert course.instructor(root, "generate", assignment).returncode == 0
    released = course.student_notebooks_from(course.REPOSITORY, assignment)
    solutions = course.reference_solutions(root, assignment)
    course.submit(root, assignment, "reference", course.fill_solutions(released, solutions))
    snooping = {name: dict(cells) for name, cells in solutions.items()}
    for cells in snooping.values():
        first = next(iter(cells))
        cells[first] = SNOOP.format(root=str(root), assignment=assignment) + cells[first]
    course.submit(root, assignment, "snoop", course.fill_solutions(released, snooping))
    graded = course.instructor(root, "autograde", assignment, "--jobs", "2")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    maximum = course.max_scores(root, assignment)
    assert course.cell_scores(root, assignment, "reference") == maximum, graded.stdout
    # The snooping code is also flagged for review (nf_course.tamper): the tests after it score 0.
    zeroed = course.tampering_losses(assignment)
    snoop = {cell: points - zeroed.get(cell, 0.0) for cell, points in maximum.items()}
    assert course.cell_scores(root, assignment, "snoop") == snoop, graded.stdout
    assert "[system-access]" in read_flags(root / "grading/tamper", assignment, "snoop")
    for student in ("reference", "snoop"):
        assert (root / "grading/logs" / assignment / f"{student}.log").is_file()
    assert not (root / "pwned.txt").exists()
    assert not (Path(sandbox.__file__).parent / "x.py").exists()
    (path,) = course.notebook_paths(root / "grading/autograded/snoop" / assignment)
    outputs = "".join(
        output.get("text", "")
        for cell in nbformat.read(path, as_version=4).cells
        for output in cell.get("outputs", [])
    )
    assert outputs.count("blocked") == 5, outputs
    hidden, solution = course.protected_lines(root, assignment)
    assert not [line for line in hidden | solution if line in outputs]


def test_the_outer_limit_kills_the_sandbox_and_what_it_started(tmp_path: Path, monkeypatch) -> None:
    """A notebook that starts a helper process and hangs, stopped by ``--timeout``: nothing of
    its sandbox survives, and the staged copy of its files is gone."""
    assignment = "01_change_of_variables"
    marker = f"nf-sandbox-stall-{os.getpid()}"
    stall = (
        f"import subprocess, time\nsubprocess.Popen(['sh', '-c', 'sleep 600; : {marker}'])\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    root = course.make_course(tmp_path / "course", [assignment])
    assert course.instructor(root, "generate", assignment).returncode == 0
    released = course.student_notebooks_from(course.REPOSITORY, assignment)
    solutions = course.reference_solutions(root, assignment)
    for cells in solutions.values():
        first = next(iter(cells))
        cells[first] = stall + cells[first]
    course.submit(root, assignment, "stalls", course.fill_solutions(released, solutions))
    scratch = tmp_path / "tmp"  # the instructor tool's TMPDIR, where the sandbox stages files
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    stopped = course.instructor(root, "autograde", assignment, "--timeout", "15")
    assert "did not finish within 15 s" in stopped.stdout, stopped.stdout + stopped.stderr
    left = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if marker in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, left
    assert not list(scratch.iterdir())
