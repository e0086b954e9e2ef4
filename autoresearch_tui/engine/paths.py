"""Where the session keeps its files: one place that names everything under `.autoresearch/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".autoresearch"


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def jsonl(self) -> Path:
        return self.state_dir / "runs.jsonl"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def lock(self) -> Path:
        return self.state_dir / "lock"

    @property
    def platform_cache(self) -> Path:
        return self.state_dir / "platform.json"

    @property
    def run_log(self) -> Path:
        """`run.log` in the repository: the current run's output (a hard link)."""
        return self.root / "run.log"

    def log(self, n: int, kind: str = "") -> Path:
        """The log of experiment `n` (`kind`: "" for the run, "confirm", "guard")."""
        return self.logs_dir / (f"{n:05d}.{kind}.log" if kind else f"{n:05d}.log")

    def exit_file(self, n: int, kind: str = "") -> Path:
        return self.logs_dir / (f"{n:05d}.{kind}.exit" if kind else f"{n:05d}.exit")

    def curve(self, n: int) -> Path:
        return self.state_dir / "curves" / f"{n:05d}.json"

    def crash_log(self, stamp: str) -> Path:
        return self.state_dir / f"crash-{stamp}.log"


def paths_for(root: Path) -> Paths:
    return Paths(Path(root))
