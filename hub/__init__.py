"""The course hub: JupyterHub on one machine for the course's students and instructors.

Configured by ``hub/course_hub.toml``; run with ``python -m hub`` (the ``make hub*`` targets);
documented in the README's section for instructors; tested by ``tests_hub/``.
"""
