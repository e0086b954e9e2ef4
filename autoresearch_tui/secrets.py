"""What counts as a secret, in one rule (README, "Security model"):

* a variable whose **name contains** KEY, TOKEN, SECRET, PASSWORD, PASSWD, PASSPHRASE, CREDENTIAL,
  AUTH, COOKIE or PRIVATE (any case, anywhere in the name: `MYTOKEN`, `DBPASSWORD`, `KEYBOARD`
  too), or whose name has `PAT` as a word (`GITHUB_PAT`);
* a variable whose **value** is a URL with a password in it (`postgres://user:pw@host/db`).

Such variables are removed from every run's environment (and from the app's own git commands),
except the names listed in `[research] keep_env`. Their values are also redacted (`[redacted]`)
from the error tails the app keeps and feeds to a proposer, so that a run that found one some
other way cannot ship it out through the records or the LLM prompt.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Mapping

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|PRIVATE|(^|_)PAT(_|$)", re.I)
_URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def is_secret(name: str, value: str) -> bool:
    return is_secret_name(name) or bool(_URL_PASSWORD.search(value or ""))


def scrub(env: Mapping[str, str], keep: Iterable[str] = ()) -> dict[str, str]:
    """`env` without its secrets (but the names in `keep`)."""
    kept = set(keep)
    return {k: v for k, v in env.items() if k in kept or not is_secret(k, v)}


def secret_values(env: Mapping[str, str] | None = None, keep: Iterable[str] = ()) -> list[str]:
    """The values of the secrets in `env` (default: this process's), longest first, short ones left out."""
    env = os.environ if env is None else env
    kept = set(keep)
    vals = {v for k, v in env.items() if k not in kept and len(v) >= 6 and is_secret(k, v)}
    return sorted(vals, key=len, reverse=True)


def redact(text: str, values: Iterable[str] | None = None) -> str:
    for v in secret_values() if values is None else values:
        if v in text:
            text = text.replace(v, REDACTED)
    return text
