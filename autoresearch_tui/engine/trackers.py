"""Experiment trackers (W&B, MLflow, trackio): each run's environment says how to group and name
it, so that a training script that already logs to a tracker shows the night's experiments as
one group with readable names. The app itself depends on no tracker.

* W&B reads `WANDB_RUN_GROUP`, `WANDB_NAME`, `WANDB_TAGS`, `WANDB_JOB_TYPE`, `WANDB_NOTES` itself.
* MLflow reads `MLFLOW_RUN_CONTEXT` itself (JSON tags added to every run it starts, the run name
  `mlflow.runName` among them); `MLFLOW_RUN_NAME` is there for `mlflow.start_run(run_name=...)`.
* trackio reads no variables for this: `trackio.init(project=..., name=os.environ["AUTORESEARCH_RUN_NAME"],
  group=os.environ["AUTORESEARCH_GROUP"])` (README, "Using W&B / MLflow / trackio").

A tracker's run URL printed in a run's log (W&B's "View run at", MLflow's "View run … at") is
found by `find_run_url` and shown with the experiment.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

_DESC_MAX = 200


def run_env(tag: str, n: int, slot: int, kind: str = "run", description: str = "",
            environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a run gets so that trackers group (by session) and name (by experiment) it.
    `environ`: the app's own environment (a MLFLOW_RUN_CONTEXT already set there is extended)."""
    kind = kind or "run"
    group = f"autoresearch-{tag}"
    name = f"{tag}-{n:03d}" + ("" if kind == "run" else f"-{kind}")
    desc = " ".join(description.split())[:_DESC_MAX]
    tags = ["autoresearch", tag, kind]
    env = {
        "AUTORESEARCH_TAG": tag,
        "AUTORESEARCH_BRANCH": f"autoresearch/{tag}",
        "AUTORESEARCH_ITERATION": str(n),
        "AUTORESEARCH_SLOT": str(slot),
        "AUTORESEARCH_KIND": kind,
        "AUTORESEARCH_GROUP": group,
        "AUTORESEARCH_RUN_NAME": name,
        "AUTORESEARCH_TAGS": ",".join(tags),
        "AUTORESEARCH_DESCRIPTION": desc,
        # W&B
        "WANDB_RUN_GROUP": group,
        "WANDB_NAME": name,
        "WANDB_TAGS": ",".join(tags),
        "WANDB_JOB_TYPE": kind,
        "WANDB_NOTES": desc,
        # MLflow
        "MLFLOW_RUN_NAME": name,
    }
    context: dict[str, str] = {}
    try:
        old = json.loads((environ or {}).get("MLFLOW_RUN_CONTEXT", "") or "{}")
        if isinstance(old, dict):
            context.update({str(k): str(v) for k, v in old.items()})
    except ValueError:
        pass
    context.update({"mlflow.runName": name, "autoresearch.group": group, "autoresearch.tag": tag,
                    "autoresearch.iteration": str(n), "autoresearch.kind": kind})
    if desc:
        context["mlflow.note.content"] = desc
    env["MLFLOW_RUN_CONTEXT"] = json.dumps(context, sort_keys=True)
    return env


_URL = r"https?://[^\s'\"<>\x1b]+"
_PATTERNS = [
    re.compile(r"View run\b.*?\bat:?\s+(" + _URL + ")"),  # W&B ("View run NAME at: URL"), MLflow ("🏃 View run NAME at: URL")
    re.compile(r"(" + r"https?://(?:[\w.-]*\.)?wandb\.(?:ai|io)/[^\s'\"<>\x1b]*/runs/[^\s'\"<>\x1b]+" + ")"),
    re.compile(r"(" + _URL + r"#/experiments/\d+/runs/[0-9a-f]+)"),  # an MLflow server
    re.compile(r"(" + r"https?://huggingface\.co/spaces/[^\s'\"<>\x1b]+" + ")"),  # trackio on a Space
]


def find_run_url(log_text: str) -> str:
    """The tracker run URL the log printed ('' when none), the last one if several."""
    found = ""
    lines = log_text.splitlines()
    for line in (lines if len(lines) <= 2200 else lines[:200] + lines[-2000:]):
        for rx in _PATTERNS:
            m = rx.search(line)
            if m:
                found = m.group(1).rstrip(".,;)")
                break
    return found
