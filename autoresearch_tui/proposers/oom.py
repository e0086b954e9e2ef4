"""Out of memory: the batch constants of a script, the half-batch retry's edits, and whether an
experiment itself raised the batch (then a smaller batch would only undo the idea: no retry).

Only module-level constants are read (``DEVICE_BATCH_SIZE = 64``): the per-device batch is the
first of DEVICE_BATCH*, MICRO_BATCH*, PER_DEVICE*BATCH*, else BATCH_SIZE / BATCH; the
accumulation constant is one whose name has ACCUM in it. A total (effective) batch such as
``TOTAL_BATCH_SIZE`` is never halved: a script that derives its accumulation from it keeps the
effective batch by itself.
"""

from __future__ import annotations

import re

from .base import Edit
from .constants import Constant, find_constants, fmt, replace_value

_PER_DEVICE = re.compile(r"^(?:DEVICE_BATCH|MICRO_BATCH|PER_DEVICE\w*BATCH|LOCAL_BATCH)\w*$", re.I)
_PLAIN = re.compile(r"^(?:TRAIN_)?BATCH(?:_SIZE)?$", re.I)
_ANY_BATCH = re.compile(r"BATCH", re.I)
_ACCUM = re.compile(r"ACCUM", re.I)
_EVAL = re.compile(r"EVAL|VAL_|TEST", re.I)


def _ints(files: dict[str, str]) -> list[Constant]:
    out = []
    for path, text in files.items():
        if path.endswith(".py"):
            out.extend(c for c in find_constants(path, text, skip=None)
                       if isinstance(c.value, int) and not isinstance(c.value, bool) and not _EVAL.search(c.name))
    return out


def device_batch(files: dict[str, str]) -> Constant | None:
    consts = _ints(files)
    return (next((c for c in consts if _PER_DEVICE.match(c.name)), None)
            or next((c for c in consts if _PLAIN.match(c.name)), None))


def accumulation(files: dict[str, str]) -> Constant | None:
    return next((c for c in _ints(files) if _ACCUM.search(c.name)), None)


def half_batch(files: dict[str, str]) -> tuple[list[Edit], list[tuple[str, int, int]]]:
    """The edits that halve the per-device batch and double the accumulation (where there is one),
    and the changes as (name, old, new). Nothing when there is no batch constant or it is 1."""
    b = device_batch(files)
    if b is None or b.value < 2:
        return [], []
    edits, changes = [replace_value(b, b.value // 2)], [(b.name, b.value, b.value // 2)]
    a = accumulation(files)
    if a is not None and a.value >= 1:
        edits.append(replace_value(a, a.value * 2))
        changes.append((a.name, a.value, a.value * 2))
    return edits, changes


def describe(changes: list[tuple[str, int, int]]) -> str:
    return ", ".join(f"{n} {fmt(o)} -> {fmt(v)}" for n, o, v in changes)


def raised_batch(before: dict[str, str], after: dict[str, str]) -> str:
    """'NAME old -> new' when the change from `before` to `after` raised a batch constant (any:
    per device, micro, total) or cut the accumulation, else ''."""
    old = {(c.path, c.name): c.value for c in _ints(before)}
    for c in _ints(after):
        was = old.get((c.path, c.name))
        if was is None:
            continue
        if (_ANY_BATCH.search(c.name) and c.value > was) or (_ACCUM.search(c.name) and c.value < was):
            return f"{c.name} {fmt(was)} -> {fmt(c.value)}"
    return ""
