"""JupyterHub's configuration for the course hub: every value comes from ``course_hub.toml``.

Started by ``python -m hub start`` (``make hub``) as ``jupyterhub -f hub/jupyterhub_config.py``;
``NF_COURSE_HUB_CONFIG`` names another TOML file (the tests use their own).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub import settings
from hub.hubconfig import configure

configure(get_config(), settings.load())  # noqa: F821 (get_config is JupyterHub's)
