"""Platform detection (Phase 1): CUDA, Apple MPS or CPU, and advice for the proposer.

torch is asked in a child process (importing it here would cost seconds and memory in the app
and could initialise CUDA in the parent); without torch, `nvidia-smi` is asked.
"""

from __future__ import annotations

import json
import os
import platform as _pf
import shutil
import subprocess
import sys
from typing import Any

_PROBE = r"""
import json, sys
out = {"torch": None}
try:
    import torch
    out["torch"] = torch.__version__
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out["kind"] = "cuda"
        out["devices"] = [
            {"name": torch.cuda.get_device_name(i),
             "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 1024**3, 1)}
            for i in range(n)]
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out["kind"] = "mps"
        try:
            out["devices"] = [{"name": "Apple MPS", "memory_gb": round(torch.mps.recommended_max_memory() / 1024**3, 1)}]
        except Exception:
            pass
    else:
        out["kind"] = "cpu"
except Exception as e:
    out["error"] = type(e).__name__
print(json.dumps(out))
"""


def _nvidia_smi() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        p = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    devs = []
    for line in p.stdout.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2:
            try:
                devs.append({"name": parts[0], "memory_gb": round(float(parts[1]) / 1024, 1)})
            except ValueError:
                continue
    return devs


def _memory_line(kind: str, devices: list[dict[str, Any]] | None) -> list[str]:
    """The device's memory, where it is known: what a batch and a model must fit in."""
    mems = [d.get("memory_gb") for d in devices or [] if isinstance(d.get("memory_gb"), (int, float))]
    if not mems:
        return []
    name = (devices or [{}])[0].get("name") or kind
    what = {"cuda": "GPU", "mps": "Apple MPS (unified)"}.get(kind, "RAM")
    per = " per device" if len(mems) > 1 else ""
    return [f"Memory: {min(mems):g} GB of {what} memory{per} ({name}); a batch or model that does not fit runs out of "
            "memory (retried once at half the device batch)"]


def advice_for(kind: str, devices: list[dict[str, Any]] | None = None) -> list[str]:
    mem = _memory_line(kind, devices)
    if kind == "cuda":
        return ["CUDA: torch.compile and bf16 autocast are available; full batch sizes apply", *mem]
    if kind == "mps":
        return [
            "Apple MPS: do not use torch.compile; use PyTorch SDPA instead of FlashAttention",
            "MPS: lower the device batch size 2-4x; cast optimizer states to float32 if Metal errors appear",
            *mem,
        ]
    return [
        "CPU only: no torch.compile, no bf16/fp16; prefer small batches and small models",
        "CPU only: every step is slow, so changes that raise steps per second often win within the budget",
        *mem,
    ]


def detect(python: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Detect the platform. `python` is the interpreter the experiments use (default: ours)."""
    info: dict[str, Any] = {
        "os": _pf.system(),
        "machine": _pf.machine(),
        "cpus": os.cpu_count() or 1,
        "python": _pf.python_version(),
    }
    probe: dict[str, Any] = {}
    try:
        p = subprocess.run([python or sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
        probe = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        probe = {}
    info["torch"] = probe.get("torch")
    kind = probe.get("kind")
    devices = probe.get("devices") or []
    if not kind:
        devices = _nvidia_smi()
        kind = "cuda" if devices else "cpu"
    info["kind"] = kind
    info["devices"] = devices
    if kind == "cuda" and devices:
        names = sorted({d["name"] for d in devices})
        info["summary"] = f"CUDA {len(devices)}x {', '.join(names)} ({devices[0].get('memory_gb', '?')} GB)"
    elif kind == "mps":
        info["summary"] = "Apple MPS"
    else:
        info["summary"] = f"CPU ({info['cpus']} cores)"
    if kind == "cpu" and not devices:
        try:
            import psutil

            devices = [{"name": f"CPU ({info['cpus']} cores)", "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1)}]
        except Exception:  # noqa: BLE001 - memory unknown: no memory advice
            devices = []
        info["devices"] = devices
    info["advice"] = advice_for(kind, devices)
    return info
