"""The command line: ``python -m skinverse info`` and ``demo``."""

import subprocess
import sys

import pytest

from skinverse.__main__ import main


def test_info_prints_versions_and_device(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch threads" in out and "device='auto' picks" in out and "scikit-learn" in out


def test_demo_quick_prints_a_table(capsys):
    assert main(["demo", "--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["estimator", "data", "metric"]
    assert len(lines) >= 2


def test_demo_rejects_unknown_estimator(capsys):
    assert main(["demo", "--only", "NoSuchEstimator"]) == 2
    assert "unknown estimator" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["info"], ["demo"]])
def test_help(command):
    out = subprocess.run(
        [sys.executable, "-m", "skinverse", *command, "--help"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith("usage: python -m skinverse")
