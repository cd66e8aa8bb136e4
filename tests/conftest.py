"""Shared test helpers: running the CLI in-process and fingerprinting files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from onnxprune import cli


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def assert_user_error(self, *fragments: str) -> None:
        """One line ``onnxprune: error: ...`` on stderr, exit code 2, no traceback."""
        assert self.returncode == 2, self
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("onnxprune: error: "), self.stderr
        assert "Traceback" not in self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*args)``: ``onnxprune.cli.main`` in this process, its exit code and captured output."""
    def run(*args) -> CliResult:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: compare before and after to prove nothing was written."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def digests():
    return file_digests
