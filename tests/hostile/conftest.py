"""Helpers of the hostile-input suite: run the CLI, hash a tree, check the one-line error.

Every test here feeds ``alignrec-data`` one faulty or hostile input and asserts what a user
would check: the exit code, the one ``Error:`` line that names the file or value and the fix,
no traceback, and that nothing outside the command's target changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from alignrec_data.cli import cli

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    """What one CLI run left: exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The ``Error: ...`` line on stderr ('' if none)."""
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("Error:")]
        return lines[-1] if lines else ""


def run(*args: str | Path, cwd: Path | None = None) -> Outcome:
    """Run ``alignrec-data ARGS`` in this process (click's runner) and return its outcome."""
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, result.stdout, stderr)


def run_process(
    *args: str | Path,
    cwd: Path | None = None,
    memory_limit_mb: int | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Run ``python -m alignrec_data ARGS`` as a real process, optionally under RLIMIT_AS."""

    def limit() -> None:
        if memory_limit_mb is not None:
            n = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (n, n))

    proc = subprocess.run(
        [sys.executable, "-m", "alignrec_data", *[str(a) for a in args]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, **(env or {})},
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(out: Outcome, code: int, *patterns: str) -> None:
    """Assert exit ``code``, no traceback, and an ``Error:`` line matching every pattern."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.code == code, (out.code, out.stderr)
    assert out.error_line, f"no 'Error:' line on stderr: {out.stderr!r}"
    for pattern in patterns:
        assert re.search(pattern, out.error_line + "\n" + out.stderr), (pattern, out.stderr)


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256 or 'dir' or 'link->target'}`` of everything under ``root``."""
    digest: dict[str, str] = {}
    if not root.exists():
        return digest
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in dirnames:
            p = d / name
            rel = str(p.relative_to(root))
            digest[rel] = f"link->{os.readlink(p)}" if p.is_symlink() else "dir"
        for name in filenames:
            p = d / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                digest[rel] = f"link->{os.readlink(p)}"
            else:
                digest[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digest


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder holding ``data/`` (the data dir) and ``outside/`` (must never change)."""
    (tmp_path / "data").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "NOTES.md").write_text("my notes\n")
    (outside / "src").mkdir()
    (outside / "src" / "main.py").write_text("print('mine')\n")
    return tmp_path
