"""A password authenticator for the tests only: users and passwords from a JSON file.

``course_hub.toml`` switches it on with ``hub.authenticator = "test"``, which
:func:`hub.settings.check` refuses unless the hub listens on a loopback address; the
authenticator checks the hub's address again on every login, in case it was configured by hand.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.auth import Authenticator
from traitlets import Unicode

from hub.settings import is_loopback


class LoopbackPasswordAuthenticator(Authenticator):
    """Logs in the users of ``passwords_file`` (``{"name": "password"}``), on loopback only."""

    passwords_file = Unicode(config=True, help="JSON file {user name: password}")

    def _check_loopback(self) -> None:
        hub = self.parent
        host = urlparse(hub.bind_url).hostname if hub is not None else None
        if host is None or not is_loopback(host):
            raise RuntimeError(
                f"the test authenticator refuses to log anyone in on {host!r}: loopback only"
            )

    async def authenticate(self, handler, data: dict) -> str | None:
        self._check_loopback()
        passwords = json.loads(Path(self.passwords_file).read_text())
        expected = passwords.get(data.get("username", ""))
        if expected is None or not hmac.compare_digest(expected, data.get("password", "")):
            return None
        return data["username"]
