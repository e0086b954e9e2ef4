"""What counts as a secret: variables whose name contains KEY, TOKEN, SECRET, PASSWORD… as a
word. Used to scrub the runs' environment and to redact error texts."""

from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(^|_)(KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.I)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))
