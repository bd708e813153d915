"""Running the Snakemake workflow from tests, always in a temporary working folder.

``snakemake(workdir, *args)`` runs the repository's Snakefile with
``--directory workdir``, so that tests never write into the repository's
``results/``, ``logs/`` or ``.snakemake/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import run_text

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "Snakefile"


def snakemake_command() -> list[str]:
    """The snakemake executable of this Python environment."""
    candidate = Path(sys.executable).parent / "snakemake"
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "snakemake"]


def snakemake(
    workdir: Path, *args: str | os.PathLike[str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the workflow in ``workdir`` with the arguments given; output captured as text."""
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment.setdefault("MPLBACKEND", "Agg")
    command = [
        *snakemake_command(),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        *map(str, args),
    ]
    return run_text(
        command,
        timeout=timeout,
        env=environment,
        cwd=workdir,
    )


def write_config(workdir: Path, **settings: object) -> Path:
    """A config file in ``workdir`` (relative paths in it are relative to ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def planned_jobs(output: str) -> dict[str, int]:
    """Job counts per rule from the 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("Job stats"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts
