"""Bad configuration and repository states: one clear line, exit 2, nothing lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PY, ROOT, cli, git, make_repo

from autoresearch_tui.config import ConfigError, default_tag, from_dict, load

BASE = '[research]\ncommand = "python train.py"\n'

# (case, toml text, words the message must contain)
BAD_CONFIGS = [
    ("invalid toml", "[research\ncommand = 1", ["autoresearch.toml", "invalid TOML", "line"]),
    ("not utf-8", None, ["autoresearch.toml", "UTF-8"]),
    ("unknown key", BASE + "time_budget = 30\n", ["unknown key 'time_budget'", "did you mean 'time_budget_s'"]),
    ("unknown section", "[reseach]\ncommand = 'x'\n", ["unknown key 'reseach'", "did you mean 'research'"]),
    ("section not a table", "research = 3\n", ["'research' must be a table"]),
    ("budget wrong type", BASE + 'time_budget_s = "five"\n', ["[research] time_budget_s", "a number"]),
    ("negative budget", BASE + "time_budget_s = -5\n", ["[research] time_budget_s", "positive"]),
    ("zero budget", BASE + "time_budget_s = 0\n", ["time_budget_s", "positive"]),
    ("timeout below budget", BASE + "time_budget_s = 60\ntimeout_s = 30\n", ["timeout_s", "shorter than time_budget_s"]),
    ("negative timeout", BASE + "timeout_s = -1\n", ["timeout_s"]),
    ("negative grace", BASE + "kill_grace_s = -1\n", ["kill_grace_s"]),
    ("negative iterations", BASE + "max_iterations = -3\n", ["max_iterations"]),
    ("iterations float", BASE + "max_iterations = 2.5\n", ["max_iterations", "whole number"]),
    ("empty scope", BASE + "files_in_scope = []\n", ["files_in_scope is empty"]),
    ("scope wrong type", BASE + "files_in_scope = 3\n", ["files_in_scope", "list of strings"]),
    ("overlap", BASE + 'files_in_scope = ["train.py"]\nread_only = ["train.py"]\n', ["both list train.py"]),
    ("scope escapes", BASE + 'files_in_scope = ["../x.py"]\n', ["files_in_scope", "no '..'"]),
    ("scope absolute", BASE + 'files_in_scope = ["/etc/passwd"]\n', ["absolute"]),
    ("empty command", '[research]\ncommand = ""\n', ["[research] command is empty"]),
    ("unbalanced quotes", "[research]\ncommand = \"python 'train.py\"\n", ["[research] command cannot be parsed"]),
    ("bad tag", BASE + 'branch_tag = "my tag"\n', ["branch_tag", "not a usable branch name"]),
    ("bad results file", BASE + 'results_file = "../r.tsv"\n', ["results_file"]),
    ("bad direction", BASE + '[metric]\ndirection = "down"\n', ["[metric] direction", "minimize"]),
    ("bad regex", BASE + '[metric]\npattern = "val=("\n', ["[metric] pattern is not a valid regular expression"]),
    ("regex without group", BASE + '[metric]\npattern = "val=[0-9.]+"\n', ["exactly one group"]),
    ("negative min_delta", BASE + "[metric]\nmin_delta = -0.1\n", ["min_delta"]),
    ("bad metric name", BASE + '[metric]\nname = "val bpb"\n', ["[metric] name"]),
    ("bad proposer", BASE + '[proposer]\nkind = "gpt"\n', ["[proposer] kind", "mutate"]),
    ("llm without model", BASE + '[proposer]\nkind = "llm"\n', ["[proposer] model is empty"]),
    ("temperature", BASE + "[proposer]\ntemperature = 3\n", ["temperature"]),
    ("negative cost cap", BASE + "[proposer]\nmax_cost_usd = -1\n", ["max_cost_usd"]),
    ("api base scheme", BASE + '[proposer]\napi_base = "localhost:11434"\n', ["api_base", "http://"]),
    ("bool as string", BASE + '[proposer]\npipeline = "yes"\n', ["pipeline", "true or false"]),
    ("oom_retry as string", BASE + 'oom_retry = "no"\n', ["[research] oom_retry", "true or false"]),
]


@pytest.mark.parametrize("case,text,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_gives_one_line_naming_file_and_key(tmp_path, case, text, words):
    path = tmp_path / "autoresearch.toml"
    if text is None:
        path.write_bytes(b"[research]\ncommand = '\xff\xfe'\n")
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load(path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("autoresearch.toml")
    for w in words:
        assert w in msg, (w, msg)


def test_bad_config_through_the_cli_exits_2_without_traceback(tmp_path):
    root = make_repo(tmp_path / "r", write_config=False)
    (root / "autoresearch.toml").write_text(BASE + "time_budget_s = -5\n")
    for args in (["--headless"], ["check"], ["summary"]):
        p = cli(root, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0
        assert "time_budget_s" in p.stderr
    # nothing was created or changed
    assert git(root, "branch", "--list").strip() == "* main"
    assert not (root / "results.tsv").exists()


def test_example_config_is_valid_and_documents_every_key():
    cfg = load(ROOT / "autoresearch.toml.example")
    text = (ROOT / "autoresearch.toml.example").read_text()
    for section, values in cfg.to_dict().items():
        assert f"[{section}]" in text
        for key in values:
            assert f"\n{key} = " in text, f"{section}.{key} missing from the example"


def test_defaults():
    cfg = from_dict({}, Path("autoresearch.toml"))
    assert cfg.research.effective_timeout == 600
    cfg.research.time_budget_s = 20
    assert cfg.research.effective_timeout == 50
    assert cfg.branch == f"autoresearch/{default_tag()}"
    import datetime as dt

    assert default_tag(dt.date(2026, 11, 23)) == "nov23"


REPO_CASES = [
    ("not a git repo", "nogit", 2, "not inside a git repository"),
    ("no commits", "nocommits", 2, "no commits yet"),
    ("detached head", "detached", 2, "HEAD is detached"),
    ("dirty tree", "dirty", 2, "uncommitted changes in train.py"),
    ("scope file missing", "missing", 2, "'model.py' does not exist"),
    ("untracked scope file", "untracked", 2, "'model.py' is not committed"),
    ("symlink in scope", "symlink", 2, "symbolic link"),
    ("command not found", "nocmd", 2, "program 'no-such-program-xyz' was not found"),
    ("guard not found", "noguard", 2, "guard_command"),
    ("config in a subfolder", "subdir", 2, "top folder"),
    ("script missing", "typo", 2, "command: script 'trian.py' does not exist"),
]


def _setup_case(tmp_path: Path, kind: str) -> Path:

    root = tmp_path / "r"
    if kind == "nogit":
        root.mkdir()
        (root / "train.py").write_text("X = 1\n")
        (root / "prepare.py").write_text("")
        (root / "autoresearch.toml").write_text(BASE)
        return root
    if kind == "nocommits":
        root.mkdir()
        git(root, "init", "-q")
        (root / "autoresearch.toml").write_text(BASE)
        return root
    research = {}
    if kind in ("missing", "untracked", "symlink"):
        research["files_in_scope"] = ["train.py", "model.py"]
    if kind == "nocmd":
        research["command"] = "no-such-program-xyz --fast"
    if kind == "typo":
        research["command"] = f"{PY} trian.py"
    if kind == "noguard":
        research["guard_command"] = "no-such-guard-xyz"
    root = make_repo(root, research=research)
    if kind == "detached":
        git(root, "checkout", "-q", "--detach")
    elif kind == "dirty":
        (root / "train.py").write_text("LR = 5\n")
    elif kind == "untracked":
        (root / "model.py").write_text("A = 1\n")
    elif kind == "symlink":
        (root / "real.py").write_text("A = 1\n")
        (root / "model.py").symlink_to("real.py")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "link")
    elif kind == "subdir":
        sub = root / "sub"
        sub.mkdir()
        (sub / "autoresearch.toml").write_text((root / "autoresearch.toml").read_text())
        return sub
    return root


@pytest.mark.parametrize("case,kind,code,words", REPO_CASES, ids=[c[0] for c in REPO_CASES])
def test_check_and_start_refuse_bad_repository_states(tmp_path, case, kind, code, words):
    root = _setup_case(tmp_path, kind)
    for args in (["check"], ["--headless", "--max-iterations", "1"]):
        p = cli(root, *args)
        assert p.returncode == code, (args, p.stdout, p.stderr)
        assert words in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
    assert not (root / "results.tsv").exists()


def test_check_states_new_session_then_resume(repo):
    p = cli(repo, "check")
    assert p.returncode == 0, p.stderr
    assert "new session: branch autoresearch/t1 will be created from main" in p.stdout
    p = cli(repo, "--headless", "--max-iterations", "1")
    assert p.returncode == 0
    p = cli(repo, "check")
    assert p.returncode == 0, p.stderr
    assert "resume: branch autoresearch/t1 exists (2 experiment rows" in p.stdout


def test_restart_resumes_without_a_new_baseline(repo):
    assert cli(repo, "--headless", "--max-iterations", "2").returncode == 0
    git(repo, "checkout", "-q", "main")  # the user looked at main in between
    p = cli(repo, "--headless", "--max-iterations", "2")
    assert p.returncode == 0, p.stderr
    assert "resuming autoresearch/t1" in p.stdout
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 5 and sum("baseline" in r for r in rows) == 1
    # the mutate proposer never repeats itself across the restart
    descs = [r.split("\t")[4] for r in rows]
    assert len(set(descs)) == len(descs)


def test_version_and_usage_errors():
    p = subprocess.run([PY, "-m", "autoresearch_tui", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("autoresearch-tui ")
    p = subprocess.run([PY, "-m", "autoresearch_tui", "--max-iterations", "x"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = subprocess.run([PY, "-m", "autoresearch_tui", "frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2


def test_engine_never_imports_the_ui():
    code = (
        "import sys; import autoresearch_tui.engine.session, autoresearch_tui.engine.preflight, "
        "autoresearch_tui.headless, autoresearch_tui.proposers.mutate; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'litellm')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_names_a_missing_script_and_its_nearest_file(tmp_path):
    root = make_repo(tmp_path / "r", research={"command": f"{PY} trian.py"})
    p = cli(root, "check")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert "[research] command: script 'trian.py' does not exist" in line and "did you mean 'train.py'" in line, line


def test_check_warns_when_no_script_prints_the_metric(tmp_path):
    root = make_repo(tmp_path / "r", metric={"name": "val_bp"})
    p = cli(root, "check")
    assert p.returncode == 0, p.stderr
    warns = [ln for ln in p.stdout.splitlines() if ln.startswith("warning:")]
    assert any("[metric] name 'val_bp'" in w and "did you mean 'val_bpb'" in w for w in warns), p.stdout
    ok = make_repo(tmp_path / "ok")
    assert "[metric] name" not in cli(ok, "check").stdout
