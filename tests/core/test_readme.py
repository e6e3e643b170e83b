"""The README stays the user's door: every command and every params key is documented."""

import subprocess
import sys

from alignrec_data.cli import cli
from tests.conftest import REPO


def test_params_reference_in_readme_is_current():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "params_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_cli_command_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for name in cli.commands if f"alignrec-data {name}" not in readme]
    assert missing == []


def test_quick_start_is_two_make_targets_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "    make run" in readme and "    make test" in readme
    assert "\nrun: " in makefile and "\ntest: " in makefile
