"""Which GPUs each slot gets: `[compute] slots`, `gpus_per_run` and `gpus` turned into one GPU
list per slot, so that two runs never share a GPU.

The visible GPUs come from `CUDA_VISIBLE_DEVICES` when it is set, else from `nvidia-smi -L`
(fast, no torch import). A machine without GPUs runs `slots` experiments on the CPU (each run
then gets `CUDA_VISIBLE_DEVICES=""`, so that a GPU nobody detected is not shared either).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ..config import Config


class SlotPlanError(Exception):
    """`str()` is the one-line message (the file, the key, what to do)."""


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.M)]


@dataclass
class SlotPlan:
    gpus: list[list[str]]  # per slot; [] = no GPU (CPU)
    note: str = ""  # said once at the start (e.g. "4 slots share the CPU: no GPU visible")

    @property
    def count(self) -> int:
        return len(self.gpus)


def plan_slots(cfg: Config, visible: list[str] | None = None) -> SlotPlan:
    c = cfg.compute
    file = cfg.path.name
    if c.executor != "local":  # the cluster's scheduler gives each job its GPUs
        return SlotPlan([[] for _ in range(int(c.slots))], "")
    gpus = list(c.gpus) if c.gpus else (visible_gpus() if visible is None else list(visible))
    k = c.gpus_per_run
    if c.slots == "auto":
        n = max(1, len(gpus) // k) if gpus else 1
    else:
        n = int(c.slots)
    if not gpus:
        note = f"{n} slots share the CPU: no GPU is visible" if n > 1 else ""
        return SlotPlan([[] for _ in range(n)], note)
    if n * k > len(gpus):
        raise SlotPlanError(
            f"{file}: [compute] slots = {n} with gpus_per_run = {k} needs {n * k} GPUs but {len(gpus)} "
            f"{'are listed' if c.gpus else 'are visible'} ({','.join(gpus)}); lower slots or use slots = \"auto\""
        )
    plan = [gpus[i * k:(i + 1) * k] for i in range(n)]
    if n == 1 and not c.gpus and c.slots != "auto":
        return SlotPlan([[]], "")  # one slot as before: the run sees what the user's shell sees
    return SlotPlan(plan, "")
