"""Redaction of secrets in text that leaves the process: error messages, prompts and answers.

Key values from the environment (every variable whose name says it holds a secret) and the
shapes keys have (`sk-…`, bearer tokens, `api_key=…`) become `***`. Imports nothing that leads
to litellm, so that the engine can redact what it writes (transcripts) too.
"""

from __future__ import annotations

import os
import re

from ..secrets import is_secret_name

_SECRET_SHAPES = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-\.]{8,}"),
]


def redact(text: str, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    out = str(text)
    for k, v in env.items():
        if v and len(v) >= 6 and is_secret_name(k):
            out = out.replace(v, "***")
    for rx in _SECRET_SHAPES:
        out = rx.sub(lambda m: (m.group(1) if m.groups() else "") + "***", out)
    return out
