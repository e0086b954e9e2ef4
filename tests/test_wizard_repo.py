"""The setup wizard and the repository it stands in: the engine's checks before anything is
written, and `git init` offered in a plain folder. Real folders, real git, Pilot."""

from __future__ import annotations

import sys

import pytest
from conftest import TEST_PLATFORM, TOY_PREPARE, TOY_TRAIN, git, jsonl_runs, make_repo
from test_ui import wait_for

from autoresearch_tui.engine import events as ev
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.ui.screens.wizard import WizardScreen

OPTIONS = {"env": {}, "probe_local": False, "platform": dict(TEST_PLATFORM), "tag": "wiz"}


@pytest.fixture(autouse=True)
def _user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never the repository around the tests


def text(wiz, sel: str) -> str:
    return str(wiz.query_one(sel).render())


async def _fill_and_review(pilot, wiz) -> None:
    wiz.query_one("#f-time_budget_s").value = "5"
    wiz.query_one("#f-command").value = f"{sys.executable} train.py"
    await wait_for(pilot, lambda: "valid" in text(wiz, "#wizard-ok"), 10, "the form to be valid")
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: wiz.app.focused is wiz.query_one("#start"), 10, "the start button")


@pytest.mark.parametrize("state, said", [
    ("dirty", "uncommitted changes in train.py; commit or stash them first"),
    ("detached", "HEAD is detached; check out a branch first"),
])
async def test_wizard_refuses_a_dirty_or_detached_repository_and_writes_nothing(tmp_path, state, said):
    root = make_repo(tmp_path / "myproject", write_config=False)
    if state == "dirty":
        (root / "train.py").write_text(TOY_TRAIN.replace("LR = 0.01", "LR = 0.03"))
    else:
        git(root, "checkout", "-q", "--detach")
    path = root / "autoresearch.toml"
    app = AutoresearchApp(None, config_path=path, wizard_options=OPTIONS)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), 10, "the wizard")
        wiz = app.screen
        await _fill_and_review(pilot, wiz)
        await pilot.press("enter")
        await wait_for(pilot, lambda: said in text(wiz, "#wizard-error"), 10, lambda: text(wiz, "#wizard-error"))
        assert "\n" not in text(wiz, "#wizard-error").strip()  # one line
        assert "nothing written" in text(wiz, "#wizard-ok") and app.screen is wiz
        assert not path.exists() and app.engine is None
        await pilot.press("escape")


async def test_wizard_in_a_plain_folder_offers_git_init_then_goes_on(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TOY_TRAIN)
    (folder / "prepare.py").write_text(TOY_PREPARE)
    path = folder / "autoresearch.toml"
    app = AutoresearchApp(None, config_path=path, max_iterations=1, wizard_options=OPTIONS)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), 10, "the wizard")
        wiz = app.screen
        init = wiz.query_one("#git-init")
        await wait_for(pilot, lambda: app.focused is init, 10, "the offer")
        assert "not inside a git repository" in text(wiz, "#wizard-error")
        offer = text(wiz, "#wizard-ok")
        assert "git init" in offer and "2 files" in offer and "train.py" in offer and "prepare.py" in offer, offer
        assert not wiz.query_one("#start").display and not (folder / ".git").exists()  # asking changes nothing
        await pilot.press("enter")
        await wait_for(pilot, lambda: wiz.problem is None and "created a git repository" in text(wiz, "#wizard-ok"), 20,
                       lambda: text(wiz, "#wizard-error") + text(wiz, "#wizard-ok"))
        assert git(folder, "ls-files").split() == ["prepare.py", "train.py"]
        assert len(git(folder, "log", "--format=%H").split()) == 1 and not init.display
        # and the wizard goes on: the form, the review, the session
        await _fill_and_review(pilot, wiz)
        await pilot.press("enter")
        await wait_for(pilot, lambda: path.exists(), 20, "the configuration written")
        await wait_for(pilot, lambda: app.engine is not None and app.engine.phase == ev.Phase.STOPPED, 60, "the session")
    assert [r["status"] for r in jsonl_runs(folder)][0] == "keep" and len(jsonl_runs(folder)) == 2


async def test_wizard_in_a_plain_folder_declined_exits_2_with_the_message(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TOY_TRAIN)
    app = AutoresearchApp(None, config_path=folder / "autoresearch.toml", wizard_options=OPTIONS)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), 10, "the wizard")
        await wait_for(pilot, lambda: app.focused is app.screen.query_one("#git-init"), 10, "the offer")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.return_code is not None, 10, "the app to end")
    assert app.return_code == 2 and "not inside a git repository" in app.setup_error
    assert sorted(p.name for p in folder.iterdir()) == ["train.py"]
