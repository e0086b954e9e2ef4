"""The user's own settings (not the repository's): theme choice, key map, user themes.

Folder: $XDG_CONFIG_HOME/autoresearch-tui (default ~/.config/autoresearch-tui):
  settings.toml   theme = "autoresearch-night"      (written when you pick a theme with t)
  keymap.toml     pause = "P"  (binding id = key)   (remap any key of the main screen)
  themes/*.toml   your own themes, same format as the shipped ones
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "autoresearch-tui"


def _read(name: str) -> tuple[dict[str, Any], str | None]:
    path = config_dir() / name
    if not path.exists():
        return {}, None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return {}, f"{path}: {e}"


def load_settings() -> dict[str, Any]:
    return _read("settings.toml")[0]


def save_settings(**changes: Any) -> None:
    import tomli_w

    data = load_settings()
    data.update(changes)
    path = config_dir() / "settings.toml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, tomli_w.dumps(data))
    except OSError:
        pass


def load_keymap() -> tuple[dict[str, str], str | None]:
    data, err = _read("keymap.toml")
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}, err
