"""Theme files (TOML) -> textual Theme objects; every broken file reported at once."""

from __future__ import annotations

import sys
from pathlib import Path

from textual.theme import Theme

from .settings import config_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_THEME = "autoresearch-night"
_KEYS = {"name", "primary", "secondary", "accent", "foreground", "background", "surface", "panel",
         "boost", "success", "warning", "error", "dark", "variables", "luminosity_spread", "text_alpha", "ansi"}


def shipped_themes_dir() -> Path:
    pkg = Path(__file__).resolve().parent.parent
    inside = pkg / "themes"  # in an installed wheel
    return inside if inside.is_dir() else pkg.parent / "themes"  # in a source checkout


def theme_dirs() -> list[Path]:
    return [shipped_themes_dir(), config_dir() / "themes"]


def parse_theme(path: Path) -> Theme:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    if "name" not in data or "primary" not in data:
        raise ValueError("needs at least 'name' and 'primary'")
    theme = Theme(**data)
    theme.to_color_system()  # validates the colours
    return theme


def load_themes(dirs: list[Path] | None = None) -> tuple[list[Theme], list[str]]:
    themes, errors = [], []
    for d in dirs or theme_dirs():
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                themes.append(parse_theme(path))
            except Exception as e:  # noqa: BLE001 - any broken file is reported, none is fatal
                errors.append(f"{path.name}: {e}")
    return themes, errors
