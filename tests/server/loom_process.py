"""The `loom` command of this virtual environment, run as a real process.

Tests start their commands together and then wait for them: each spends most of its time
importing, which in parallel is paid about once."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LOOM = Path(sys.executable).parent / "loom"


@dataclass(frozen=True, slots=True)
class Ran:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class Started:
    args: tuple[str, ...]
    process: subprocess.Popen[str]

    def wait(self) -> Ran:
        stdout, stderr = self.process.communicate(timeout=60)
        return Ran(self.args, self.process.returncode, stdout, stderr)


def loom_env(**settings: str) -> dict[str, str]:
    """This process's environment without its `LOOM_*` settings, plus `settings`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}, **settings}


def start_loom(*args: str, cwd: Path, **settings: str) -> Started:
    process = subprocess.Popen(
        [str(LOOM), *args],
        cwd=cwd,
        env=loom_env(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Started(args, process)


def run_loom(*args: str, cwd: Path, **settings: str) -> Ran:
    return start_loom(*args, cwd=cwd, **settings).wait()
