"""Where the repository keeps what the reporting reads and writes."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXPERIMENTS = ROOT / "experiments"
RESULTS = EXPERIMENTS / "results"

