"""Autograded notebooks run in a bubblewrap sandbox, one per submission (issue 12).

``SandboxedKernelManager`` is a jupyter_client kernel manager that starts the ipykernel inside
``bwrap`` (Debian's ``bubblewrap``: namespaces and bind mounts, no daemon, nothing installed
setuid). The kernel sees a read-only tree made of ``/usr``, the Python installation and virtual
environment, and the ``nf_course`` package; a private tmpfs at ``/tmp`` (size-limited) holds its
home, its working directory (a copy of the submission's non-notebook files) and its ZMQ sockets.
It has no network (its own network namespace: the ZMQ channels are Unix sockets that this
process reaches through ``/proc/<pid>/root``), its own PID, IPC and UTS namespaces, a seccomp
filter against new user namespaces, a clean environment and resource limits (``prlimit``).
Run by root, bwrap itself runs privileged and the kernel is then started under ``setpriv`` as
a real unprivileged uid, a different one for each sandbox alive at the same time (so the
process limit of one cannot starve another); run by anyone else, bwrap makes a user namespace
and the kernel keeps the caller's uid.

``SandboxedExecute`` is nbgrader's ``Execute`` preprocessor with that kernel manager;
``nbgrader_config.py`` puts it in ``Autograde.autograde_preprocessors``. Every nbgrader
guarantee stays: the per-cell timeout and its interrupt (sent by this manager to the kernel and
its descendants inside the sandbox), the restored test cells, the feedback filters. The module
never imports torch, so that nbgrader commands start fast. Tests: ``tests/test_sandbox.py``;
timing: ``benchmarks/sandbox_timing.py``; README, "Grading in a sandbox".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import os
import platform
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Integer, List, Unicode

__all__ = [
    "SandboxUnavailable",
    "SandboxedExecute",
    "SandboxedKernelManager",
    "autograde_preprocessors",
    "check_sandbox",
]

INSTALL_HINT = (
    "Install bubblewrap (`apt-get install bubblewrap`, or `make setup`, which does it), make sure "
    "this machine lets it create namespaces (containers may need --privileged or a seccomp/"
    "AppArmor profile that allows unshare; Ubuntu 24.04: the bwrap AppArmor profile, or run as "
    "root), or grade without a sandbox, at your own risk: `python -m nf_course.instructor "
    "autograde ASSIGNMENT --no-sandbox`."
)

# Inside the sandbox: the read-only submission folder, the writable tmpfs and what lives in it.
INBOX = "/submission"
SCRATCH = "/tmp"
HOME = f"{SCRATCH}/home"
WORKDIR = f"{SCRATCH}/work"
IPC_PREFIX = f"{SCRATCH}/.ipc/kernel"

# Runs as the sandbox user before the kernel: make the home, copy the submission's files into
# the private working directory, then become "$@" (prlimit, which becomes the kernel).
START = (
    f"mkdir -p {HOME} {WORKDIR} {IPC_PREFIX.rsplit('/', 1)[0]} && cd {WORKDIR} && "
    f"{{ cp -R {INBOX}/files/. . || echo 'sandbox: some submitted files did not fit' >&2; }} && "
    'exec "$@"'
)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot create its namespaces on this machine."""


def _python_roots() -> list[str]:
    """What the kernel's interpreter needs: the virtual environment, the base installation, the
    ``nf_course`` package (an editable install lives outside the environment)."""
    spec = importlib.util.find_spec("nf_course")  # finds the package without importing torch
    package = os.path.dirname(spec.origin) if spec and spec.origin else None
    candidates = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    roots: list[str] = []
    for path in [*candidates, package]:
        if path is None:
            continue
        path = os.path.realpath(path)
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if not any(path == root or path.startswith(root + os.sep) for root in roots):
            roots = [r for r in roots if not r.startswith(path + os.sep)] + [path]
    return roots


def _system_binds() -> list[str]:
    """``/usr`` read-only, and the top-level ``/bin``, ``/lib``... as the host has them."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in ("/etc/ld.so.cache", "/etc/fonts"):  # the loader cache; fc-list, for matplotlib
        if os.path.exists(name):
            args += [*_parents(name), "--ro-bind", name, name]
    return args


def _parents(path: str) -> list[str]:
    """Create the folders above ``path`` traversable (bwrap would make them 0700, root's)."""
    args: list[str] = []
    parent = os.path.dirname(path)
    while parent not in ("/", "", SCRATCH):
        args = ["--perms", "0755", "--dir", parent, *args]
        parent = os.path.dirname(parent)
    return args


# The seccomp filter (classic BPF) of the sandbox: no new user namespace, in which the student
# could mount a tmpfs of their own, unbounded by ``disk_bytes``. unshare and clone with
# CLONE_NEWUSER fail with EPERM; clone3, whose flags a filter cannot read, fails with ENOSYS (libc
# then uses clone); other ABIs (32-bit, x32) are refused. Per architecture: (audit arch, the
# numbers of unshare, clone, clone3); elsewhere the sandbox runs without the filter.
SECCOMP_ARCHES = {"x86_64": (0xC000003E, 272, 56, 435), "aarch64": (0xC00000B7, 97, 220, 435)}
CLONE_NEWUSER = 0x10000000


def seccomp_filter() -> bytes | None:
    """The filter as ``bwrap --seccomp`` reads it (``struct sock_filter`` records), or ``None``."""
    known = SECCOMP_ARCHES.get(platform.machine())
    if known is None:
        return None
    arch, unshare, clone, clone3 = known
    load, equal, bits, give = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ, JMP|JSET, RET
    allow, refuse, missing = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38  # ALLOW, EPERM, ENOSYS
    program = [  # (code, jump if true, jump if false, k); jumps skip that many instructions
        (load, 0, 0, 4),  # 0: the architecture
        (equal, 1, 0, arch),  # 1: native: go to 3
        (give, 0, 0, refuse),  # 2
        (load, 0, 0, 0),  # 3: the system call's number
        (bits, 0, 1, 0x40000000),  # 4: x32 ABI: refuse
        (give, 0, 0, refuse),  # 5
        (equal, 0, 1, clone3),  # 6
        (give, 0, 0, missing),  # 7
        (equal, 1, 0, unshare),  # 8: unshare or clone: read the flags at 10
        (equal, 0, 3, clone),  # 9: anything else: allow (13)
        (load, 0, 0, 16),  # 10: flags, the low half of the first argument
        (bits, 0, 1, CLONE_NEWUSER),  # 11
        (give, 0, 0, refuse),  # 12
        (give, 0, 0, allow),  # 13
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


@contextlib.contextmanager
def _seccomp_pipe() -> Iterator[int | None]:
    """The read end of a pipe holding the seccomp filter, for bwrap to inherit (``None``: no
    filter for this architecture)."""
    program = seccomp_filter()
    if program is None:
        yield None
        return
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    try:
        yield read
    finally:
        os.close(read)


def bwrap_command(
    inbox: str,
    uid: int | None,
    disk_bytes: int,
    env: dict[str, str],
    seccomp_fd: int | None,
    extra_read_only: list[str] = (),
) -> list[str]:
    """The ``bwrap`` command line up to the program: namespaces, binds, the tmpfs.

    ``uid`` is the unprivileged uid to become (run by root) or ``None`` (run by a normal user:
    bwrap then makes a user namespace, the kernel keeps the caller's uid). The program gets
    exactly the environment ``env`` (bwrap clears the one it inherits), and the seccomp filter
    read from ``seccomp_fd`` (open and inherited), if any.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bwrap (bubblewrap) is not installed. {INSTALL_HINT}")
    args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if uid is None:
        args += ["--unshare-user"]
    args += _system_binds()
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(disk_bytes), "--tmpfs", SCRATCH]
    for path in [*_python_roots(), *extra_read_only]:
        args += [*_parents(path), "--ro-bind", path, path]
    args += ["--ro-bind", inbox, INBOX, "--chdir", SCRATCH, "--clearenv"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--"]
    if uid is not None:
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args


class _UidLease:
    """An unprivileged uid that no other sandbox on this machine holds (root only).

    A lock file per uid in a private folder, held while the sandbox lives (the kernel releases
    the lock when its holder dies); a uid that still owns a process (a sandbox being torn down)
    is skipped.
    """

    def __init__(self, base: int, count: int = 1000) -> None:
        # One folder for every grader of this machine (not TMPDIR: each nbgrader has its own).
        folder = Path("/tmp") / f"nf-course-sandbox-uids-{os.geteuid()}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise SandboxUnavailable(f"{folder} is not a private folder of yours: remove it")
        busy = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info["uids"]}
        for uid in range(base, base + count):
            if uid in busy:
                continue
            lock = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            self.uid, self._lock = uid, lock
            return
        raise SandboxUnavailable(f"all sandbox uids {base}..{base + count - 1} are in use")

    def release(self) -> None:
        os.close(self._lock)


_checked: set[int] = set()


def check_sandbox(uid_base: int = 2_100_000_000) -> None:
    """Start a trivial sandbox the way the kernel's is started; raise ``SandboxUnavailable``
    with the instructions to fix it if that fails. Cached per process."""
    if uid_base in _checked:
        return
    lease = _UidLease(uid_base) if os.geteuid() == 0 else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="nf-sandbox-check-") as inbox,
            _seccomp_pipe() as seccomp,
        ):
            os.chmod(inbox, 0o755)
            command = bwrap_command(inbox, lease.uid if lease else None, 1 << 20, {}, seccomp)
            result = subprocess.run(
                [*command, "true"],
                capture_output=True,
                text=True,
                timeout=60,
                env={},
                pass_fds=() if seccomp is None else (seccomp,),
            )
    finally:
        if lease:
            lease.release()
    if result.returncode != 0:
        raise SandboxUnavailable(
            f"bwrap cannot start a sandbox here: {result.stderr.strip() or result.returncode}. "
            + INSTALL_HINT
        )
    _checked.add(uid_base)


def _stage(source: str | None, inbox: Path) -> None:
    """Copy the regular files under ``source`` but notebooks (the autograded notebook holds the
    restored hidden tests) into ``inbox/files``; world-readable for the sandbox user."""
    files = inbox / "files"
    files.mkdir(mode=0o755)
    if not source:
        return
    for folder, subfolders, names in os.walk(source):
        relative = Path(folder).relative_to(source)
        subfolders[:] = [d for d in subfolders if not os.path.islink(os.path.join(folder, d))]
        (files / relative).mkdir(mode=0o755, exist_ok=True)
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".ipynb") or not os.path.isfile(path) or os.path.islink(path):
                continue
            shutil.copyfile(path, files / relative / name)
            os.chmod(files / relative / name, 0o644)


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernel runs in a bubblewrap sandbox (module docstring).

    The limits are traits, settable in ``nbgrader_config.py`` as
    ``c.SandboxedKernelManager.memory_bytes = ...``.
    """

    memory_bytes = Integer(
        6 << 30, help="address space of each kernel process (RLIMIT_AS), bytes"
    ).tag(config=True)
    processes = Integer(256, help="processes and threads of the sandbox user (RLIMIT_NPROC)").tag(
        config=True
    )
    cpu_seconds = Integer(900, help="CPU time of each kernel process (RLIMIT_CPU), s").tag(
        config=True
    )
    file_bytes = Integer(128 << 20, help="largest file the kernel may write (RLIMIT_FSIZE)").tag(
        config=True
    )
    disk_bytes = Integer(256 << 20, help="size of the private tmpfs at /tmp, bytes").tag(
        config=True
    )
    uid_base = Integer(
        2_100_000_000, help="first of the 1000 unprivileged uids the sandboxes use (as root)"
    ).tag(config=True)
    extra_read_only = List(
        Unicode(), help="more host paths bound read-only at the same place (data folders)"
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.ip = IPC_PREFIX
        self._inbox: Path | None = None
        self._lease: _UidLease | None = None
        self._kernel: psutil.Process | None = None

    def _environment(self) -> dict[str, str]:
        """A clean, minimal environment: nothing of the instructor's but ``NBGRADER_EXECUTION``."""
        env = {
            "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "TMPDIR": SCRATCH,
            "USER": "student",
            "LOGNAME": "student",
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": f"{HOME}/.config/matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",  # a regrade iterates sets of strings in the same order
            # The kernel's parent is bwrap's process 1, and ipykernel watches no PID 1 (nor
            # prints its console banner): bwrap --die-with-parent ends it with the grader.
            "JPY_PARENT_PID": "1",
        }
        if "NBGRADER_EXECUTION" in os.environ:
            env["NBGRADER_EXECUTION"] = os.environ["NBGRADER_EXECUTION"]
        return env

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        check_sandbox(self.uid_base)
        self._inbox = Path(tempfile.mkdtemp(prefix="nf-sandbox-"))
        os.chmod(self._inbox, 0o755)
        _stage(kw.get("cwd"), self._inbox)
        self.connection_file = str(self._inbox / "kernel.json")
        self.ip = IPC_PREFIX
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        os.chmod(self.connection_file, 0o644)
        return kernel_cmd, kw

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self._inbox is not None
        if os.geteuid() == 0:
            self._lease = _UidLease(self.uid_base)
        inside = f"{INBOX}/kernel.json"
        inner = [inside if arg == self.connection_file else arg for arg in kernel_cmd]
        limits = [
            f"--as={self.memory_bytes}",
            f"--nproc={self.processes}",
            f"--cpu={self.cpu_seconds}",
            f"--fsize={self.file_bytes}",
        ]
        with _seccomp_pipe() as seccomp:
            command = bwrap_command(
                str(self._inbox),
                self._lease.uid if self._lease else None,
                self.disk_bytes,
                self._environment(),
                seccomp,
                list(self.extra_read_only),
            )
            command += ["sh", "-c", START, "start", "prlimit", *limits, "--", *inner]
            kw.update(env={"PATH": os.environ.get("PATH", os.defpath)}, cwd=str(self._inbox))
            kw["pass_fds"] = () if seccomp is None else (seccomp,)
            await super()._async_launch_kernel(command, **kw)
        self._kernel = await self._find_kernel()
        # The host reaches the kernel's Unix sockets inside the sandbox's own root.
        self.ip = f"/proc/{self._kernel.pid}/root{IPC_PREFIX}"

    async def _find_kernel(self, timeout: float = 30.0) -> psutil.Process:
        """The sandbox's first process (bwrap's child in the new PID namespace, which becomes
        the kernel); bwrap forks it only once the sandbox's file system is in place."""
        assert self.provisioner is not None
        outer = psutil.Process(self.provisioner.process.pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                for init in outer.children():
                    children = init.children()
                    if children:
                        return children[0]
            if self.provisioner.process.poll() is not None:
                break
            await asyncio.sleep(0.02)
        raise SandboxUnavailable(f"the sandboxed kernel did not start. {INSTALL_HINT}")

    async def _async_signal_kernel(self, signum: int) -> None:
        """Send ``signum`` to the kernel and its descendants inside the sandbox (a signal sent
        to bwrap would not reach them; bwrap's own process in the sandbox is left alone)."""
        kernel = self._kernel
        if kernel is None or not kernel.is_running():
            await super()._async_signal_kernel(signum)
            return
        family = [kernel]
        with contextlib.suppress(psutil.NoSuchProcess):
            family += kernel.children(recursive=True)
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    signal_kernel = _async_signal_kernel

    def cleanup_ipc_files(self) -> None:
        """Nothing to remove: the sockets lived in the sandbox's tmpfs, gone with it."""

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._inbox is not None:
            shutil.rmtree(self._inbox, ignore_errors=True)
            self._inbox = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        self._kernel = None
        self.ip = IPC_PREFIX

    cleanup_resources = _async_cleanup_resources


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` preprocessor with the kernel in a sandbox (its ``c.Execute``
    settings apply: it is a subclass)."""

    def __init__(self, **kwargs: Any) -> None:
        # Execute passes AsyncKernelManager as a keyword, which would beat any configuration.
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)


def autograde_preprocessors() -> list[type]:
    """nbgrader's default autograde preprocessors with ``Execute`` replaced by the sandboxed
    one."""
    from nbgrader.converters import Autograde

    default = Autograde.class_traits()["autograde_preprocessors"].default()
    return [SandboxedExecute if p is Execute else p for p in default]
