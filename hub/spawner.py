"""The students' spawner: JupyterHub's LocalProcessSpawner with the course's resource limits.

Each student's server runs under the student's own account, and every process it starts
(kernels included) inherits two kernel-enforced limits set before the uid is dropped:
``RLIMIT_AS`` (memory per process) and ``RLIMIT_NPROC`` (processes and threads of the account).
"""

from __future__ import annotations

import resource

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer


class CourseSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose processes start under the course's resource limits."""

    memory_per_process = Integer(0, config=True, help="RLIMIT_AS in bytes (0: no limit)")
    processes_per_student = Integer(0, config=True, help="RLIMIT_NPROC (0: no limit)")

    def make_preexec_fn(self, name):
        drop_privileges = super().make_preexec_fn(name)
        memory, processes = self.memory_per_process, self.processes_per_student

        def preexec() -> None:
            if memory:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if processes:
                resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
            drop_privileges()

        return preexec
