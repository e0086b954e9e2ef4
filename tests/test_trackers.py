"""Experiment trackers: each run's environment groups and names it. Checked with a real trackio
(local, no account) logging from the training script, and by the variables W&B and MLflow read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import TOY_TRAIN, load_cfg, make_repo, run_engine

from autoresearch_tui.engine.trackers import find_run_url, run_env
from test_engine_loop import ScriptedProposer

TRACKED_TRAIN = TOY_TRAIN + """
import json, os
env = {k: v for k, v in os.environ.items() if k.startswith(("WANDB_", "MLFLOW_", "AUTORESEARCH_"))}
with open(os.path.join(os.environ["ENV_DUMP"], f"{os.environ['AUTORESEARCH_ITERATION']}.json"), "w") as f:
    json.dump(env, f)
print("wandb: 🚀 View run " + os.environ["WANDB_NAME"] + " at: https://wandb.ai/me/proj/runs/r" + os.environ["AUTORESEARCH_ITERATION"])
import trackio
trackio.init(project="night", name=os.environ["AUTORESEARCH_RUN_NAME"], group=os.environ["AUTORESEARCH_GROUP"])
trackio.log({"val_bpb": val})
trackio.finish()
"""


def test_trackio_shows_the_nights_runs_as_one_group_with_readable_names(tmp_path, monkeypatch):
    pytest.importorskip("trackio")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("ENV_DUMP", str(tmp_path))
    monkeypatch.setenv("MLFLOW_RUN_CONTEXT", json.dumps({"team": "lm"}))  # the user's own tags stay
    root = make_repo(tmp_path / "r", train=TRACKED_TRAIN)
    cfg = load_cfg(root)
    prop = ScriptedProposer([("raise LR to 0.02", [("train.py", "LR = 0.01", "LR = 0.02")]),
                             ("widen to 48", [("train.py", "WIDTH = 32", "WIDTH = 48")])])
    eng, _ = run_engine(cfg, proposer=prop, max_iterations=2)
    assert [r.status for r in eng.records] == ["keep", "keep", "keep"]
    # what trackio stored, read back by its own API in a fresh process
    read = subprocess.run([sys.executable, "-c", "from trackio.api import Api\nimport json\n"
                           "print(json.dumps(sorted((r.name, r.config.get('_Group')) for r in Api().runs('night'))))"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [["t1-000", "autoresearch-t1"], ["t1-001", "autoresearch-t1"], ["t1-002", "autoresearch-t1"]]
    # W&B and MLflow read these themselves
    env = json.loads((tmp_path / "2.json").read_text())
    assert env["WANDB_RUN_GROUP"] == "autoresearch-t1" and env["WANDB_NAME"] == "t1-002"
    assert env["WANDB_TAGS"] == "autoresearch,t1,run" and env["WANDB_NOTES"] == "widen to 48"
    assert env["MLFLOW_RUN_NAME"] == "t1-002"
    ctx = json.loads(env["MLFLOW_RUN_CONTEXT"])
    assert ctx["mlflow.runName"] == "t1-002" and ctx["autoresearch.group"] == "autoresearch-t1" and ctx["team"] == "lm"
    assert env["AUTORESEARCH_TAG"] == "t1" and env["AUTORESEARCH_ITERATION"] == "2" and env["AUTORESEARCH_DESCRIPTION"] == "widen to 48"
    # the tracker's run link is shown with the experiment (diff view)
    assert "tracker: https://wandb.ai/me/proj/runs/r2\n" in eng.experiment_detail(eng.records[2])


def test_confirmation_and_guard_runs_are_named_apart_from_the_experiment():
    env = run_env("nov23", 7, 1, "confirm", "try  a\nwider   MLP")
    assert env["WANDB_NAME"] == "nov23-007-confirm" and env["WANDB_JOB_TYPE"] == "confirm"
    assert env["WANDB_NOTES"] == "try a wider MLP" and env["AUTORESEARCH_SLOT"] == "1"


def test_tracker_run_urls_are_found_in_a_log():
    assert find_run_url("x\nwandb: 🚀 View run nov23-004 at: https://wandb.ai/team/proj/runs/ab12cd\nval_bpb: 1.0\n") == \
        "https://wandb.ai/team/proj/runs/ab12cd"
    assert find_run_url("🏃 View run nov23-004 at: http://127.0.0.1:5000/#/experiments/1/runs/0f3e9a\n") == \
        "http://127.0.0.1:5000/#/experiments/1/runs/0f3e9a"
    assert find_run_url("loss 3.2\nsee http://example.com/docs\n") == ""
