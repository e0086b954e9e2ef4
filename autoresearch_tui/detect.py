"""Detected defaults for the setup wizard: scripts, metric, direction, proposer."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

PROVIDER_KEYS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "MISTRAL_API_KEY",
                 "GROQ_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY", "TOGETHER_API_KEY", "XAI_API_KEY"]
DEFAULT_MODELS = {
    "OPENAI_API_KEY": "openai/gpt-5", "ANTHROPIC_API_KEY": "anthropic/claude-sonnet-4-5",
    "GEMINI_API_KEY": "gemini/gemini-2.5-pro", "GOOGLE_API_KEY": "gemini/gemini-2.5-pro",
    "MISTRAL_API_KEY": "mistral/mistral-large-latest", "GROQ_API_KEY": "groq/llama-3.3-70b-versatile",
    "DEEPSEEK_API_KEY": "deepseek/deepseek-chat", "OPENROUTER_API_KEY": "openrouter/openai/gpt-5",
    "TOGETHER_API_KEY": "together_ai/Qwen/Qwen3-Coder", "XAI_API_KEY": "xai/grok-4",
}
_METRIC_PRINT = re.compile(r"""print\(\s*f?["']\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]""")
_MAXIMIZE = re.compile(r"acc|f1|score|reward|auc|precision|recall|bleu|rouge|map|iou|dice|throughput|tok.*per", re.I)
_METRIC_HINT = re.compile(r"val|loss|bpb|acc|ppl|perplex|f1|score|err|auc|reward", re.I)


def _py_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.glob("*.py")):
        if p.is_file() and not p.is_symlink():
            out.append(p)
    return out


def training_script(root: Path) -> str:
    files = [p.name for p in _py_files(root)]
    for cand in ("train.py", "main.py", "run.py"):
        if cand in files:
            return cand
    hit = next((f for f in files if "train" in f), None)
    return hit or (files[0] if files else "train.py")


def evaluator(root: Path, train: str) -> list[str]:
    files = [p.name for p in _py_files(root) if p.name != train]
    for cand in ("prepare.py", "evaluate.py", "eval.py"):
        if cand in files:
            return [cand]
    hit = [f for f in files if re.search(r"prep|eval|data", f)]
    return hit[:2]


def guess_metric(root: Path, files: list[str]) -> str:
    names: list[str] = []
    for f in files:
        try:
            text = (root / f).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names += [m.group(1) for m in _METRIC_PRINT.finditer(text)]
        names += re.findall(r"METRIC\s+([A-Za-z_][A-Za-z0-9_]*)=", text)
    for n in names:
        if n.startswith("val") and _METRIC_HINT.search(n):
            return n
    for n in names:
        if _METRIC_HINT.search(n):
            return n
    return "val_loss"


def guess_direction(metric: str) -> str:
    return "maximize" if _MAXIMIZE.search(metric) else "minimize"


def local_server(host: str = "127.0.0.1", ports: tuple[int, ...] = (11434, 8000, 8080), timeout: float = 0.15) -> str:
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return f"http://{host}:{port}"
        except OSError:
            continue
    return ""


def proposer_defaults(env: dict[str, str] | None = None, probe_local: bool = True) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    for key in PROVIDER_KEYS:
        if env.get(key):
            return {"kind": "llm", "model": DEFAULT_MODELS[key], "api_base": "", "why": f"{key} is set"}
    base = local_server() if probe_local else ""
    if base:
        model = "ollama/qwen3" if base.endswith(":11434") else "openai/local-model"
        return {"kind": "llm", "model": model, "api_base": base, "why": f"a local model server answers at {base}"}
    return {"kind": "mutate", "model": "", "api_base": "", "why": "no provider key or local server found"}
