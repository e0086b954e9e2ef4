"""The bundled demo, platform detection and packaging facts."""

from __future__ import annotations

import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import PY, ROOT, jsonl_runs, tsv_rows

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="the demo needs torch: pip install 'autoresearch-tui[torch]'")
def test_demo_headless_runs_real_training_and_records_rows(tmp_path):
    target = tmp_path / "demo"
    p = subprocess.run([PY, "-m", "autoresearch_tui", "demo", str(target), "--headless", "--iterations", "2", "--budget", "2"],
                       capture_output=True, text=True, timeout=400, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = tsv_rows(target)
    assert len(rows) == 3
    assert rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"
    recs = jsonl_runs(target)
    for r in recs:
        if r["status"] != "crash":
            # a real char-level LM: bits per byte between "perfect" and "uniform over bytes"
            assert 0.5 < r["metric"] < 12.0  # real bits per byte of a barely trained byte-level LM
            assert r["secondary"]["num_steps"] >= 1
            assert r["secondary"]["training_seconds"] >= 1.5
    assert recs[1]["description"].startswith("LEARNING_RATE 0.001 -> ")
    assert "=== Autoresearch Complete (2 iterations) ===" in p.stdout
    assert f"demo: example copied to {target}" in p.stderr
    # a second call continues the same demo session (no new baseline)
    p = subprocess.run([PY, "-m", "autoresearch_tui", "demo", str(target), "--headless", "--iterations", "1", "--budget", "2"],
                       capture_output=True, text=True, timeout=400, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert len(tsv_rows(target)) == 4
    assert f"demo: resuming the demo in {target}" in p.stderr and "copied" not in p.stderr


def test_demo_budget_is_five_times_what_the_baseline_needs_at_the_measured_speed(tmp_path):
    from autoresearch_tui.demo import calibrate

    # a stand-in for the example: it trains 100 of its 600 steps in the seconds it is given
    (tmp_path / "train.py").write_text(
        "import os\n"
        "assert os.environ['AUTORESEARCH_TIME_BUDGET'] == '4.0'\n"
        "print('step 100/600', end='\\r')\n"
        "print('\\nnum_steps: 100\\ntraining_seconds: 4.0\\nplanned_steps: 600')\n")
    budget, why = calibrate(tmp_path)
    assert budget == 120  # 25 steps/s: 600 steps need 24 s; x5
    assert "25 steps/s" in why and "about 24 s" in why and "time budget 120 s" in why
    (tmp_path / "train.py").write_text("raise SystemExit('no torch here')\n")
    budget, why = calibrate(tmp_path)
    assert budget is None and "no torch here" in why


def test_demo_without_torch_says_how_to_install_and_exits_2(tmp_path):
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from autoresearch_tui.cli import main\n"
        "sys.exit(main(['demo', sys.argv[1], '--headless']))\n"
    )
    p = subprocess.run([PY, "-c", code, str(tmp_path / "d")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "pip install 'autoresearch-tui[torch]'" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "d").exists()


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.tex").write_text("precious")
    p = subprocess.run([PY, "-m", "autoresearch_tui", "demo", str(tmp_path / "x"), "--headless"], capture_output=True, text=True)
    if not HAS_TORCH:
        pytest.skip("torch missing: the torch message comes first")
    assert p.returncode == 2 and "is not an earlier demo" in p.stderr
    assert (tmp_path / "x" / "thesis.tex").read_text() == "precious"


def test_platform_detection_reports_kind_and_advice():
    from autoresearch_tui.engine.platform import advice_for, detect

    info = detect()
    assert info["kind"] in ("cpu", "cuda", "mps")
    assert info["cpus"] >= 1 and info["summary"]
    assert info["advice"] == advice_for(info["kind"], info["devices"])
    # the device's memory is named where it is known
    mem = info["devices"][0]["memory_gb"] if info["devices"] else None
    if mem:
        assert any(f"Memory: {mem:g} GB" in a for a in info["advice"]), info["advice"]
    assert advice_for("cuda", [{"name": "NVIDIA H100", "memory_gb": 79.1}])[-1].startswith(
        "Memory: 79.1 GB of GPU memory (NVIDIA H100)")
    assert not any("Memory" in a for a in advice_for("cuda"))
    if HAS_TORCH:
        assert info["torch"]
    assert any("torch.compile" in a for a in advice_for("mps"))


def test_wheel_ships_themes_and_example(tmp_path):
    p = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "hatchling" in (p.stderr + p.stdout):
        p = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(Path(tmp_path).glob("autoresearch_tui-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ["autoresearch_tui/themes/night.toml", "autoresearch_tui/themes/paper.toml",
                   "autoresearch_tui/themes/phosphor.toml", "autoresearch_tui/example/train.py",
                   "autoresearch_tui/example/prepare.py", "autoresearch_tui/example/corpus.txt",
                   "autoresearch_tui/example/program.md", "autoresearch_tui/example/autoresearch.toml",
                   "autoresearch_tui/ui/app.tcss"]:
        assert needed in names, needed
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    assert not any(ln.split(":")[1].strip().startswith("torch") and "extra" not in ln for ln in requires)


def test_themes_load_and_broken_files_are_reported_together(tmp_path):
    from autoresearch_tui.ui.themes import load_themes, shipped_themes_dir

    themes, errors = load_themes([shipped_themes_dir()])
    assert {t.name for t in themes} >= {"autoresearch-night", "autoresearch-paper", "autoresearch-phosphor"}
    assert errors == []
    (tmp_path / "a.toml").write_text("name = 'x'\nprimary = 'not-a-colour'\n")
    (tmp_path / "b.toml").write_text("name = ")
    (tmp_path / "c.toml").write_text("name = 'ok'\nprimary = '#112233'\nwat = 1\n")
    themes, errors = load_themes([tmp_path])
    assert themes == [] and len(errors) == 3 and errors[0].startswith("a.toml")
