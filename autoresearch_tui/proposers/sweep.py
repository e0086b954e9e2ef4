"""Sweeps: `sweep LR 0.02 0.04 0.08` (an idea, typed or from the palette) is one experiment per
value of a module-level constant, run over free slots as one step."""

from __future__ import annotations

import re

from .base import Proposal
from .constants import find_constants, fmt, replace_value
from .mutate import _parse_literal

_SWEEP = re.compile(r"^\s*sweep\s+([A-Za-z_][A-Za-z0-9_]*)\s*[:=]?\s+(.+?)\s*$", re.I)


class SweepError(ValueError):
    """`str()` says why the sweep cannot run (the idea is marked with it)."""


def parse(idea: str) -> tuple[str, list[str]] | None:
    """(constant, values) of a sweep idea, else None (not a sweep)."""
    m = _SWEEP.match(idea)
    if not m:
        return None
    values = [v for v in re.split(r"[\s,]+", m.group(2)) if v]
    return m.group(1), values


def proposals(idea: str, files: dict[str, str]) -> list[Proposal]:
    """One proposal per value (in the order given; the current value and repeats left out)."""
    parsed = parse(idea)
    if parsed is None:
        raise SweepError("not a sweep")
    name, raw = parsed
    consts = [c for path, text in files.items() if path.endswith(".py") for c in find_constants(path, text, skip=None)]
    c = next((c for c in consts if c.name == name), None)
    if c is None:
        raise SweepError(f"no module-level constant {name} in {', '.join(files)}")
    out: list[Proposal] = []
    seen = {fmt(c.value)}
    for v in raw:
        try:
            new = _parse_literal(v, c.value)
        except ValueError:
            raise SweepError(f"{v!r} is not a value for {name} (now {fmt(c.value)})") from None
        if fmt(new) in seen:
            continue
        seen.add(fmt(new))
        out.append(Proposal(description=f"{name} {fmt(c.value)} -> {fmt(new)} (sweep)", edits=[replace_value(c, new)],
                            hypothesis=f"the sweep of {name} over {' '.join(raw)} finds its best value", idea=idea,
                            mutation={"name": name, "old": fmt(c.value), "new": fmt(new), "path": c.path}))
    if len(out) < 2:
        raise SweepError(f"a sweep needs at least two new values of {name} (now {fmt(c.value)})")
    return out
