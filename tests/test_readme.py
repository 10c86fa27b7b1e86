"""The README's generated blocks: only the text between the markers is rewritten."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from readme import MissingBlockError, block, replace_block  # noqa: E402

TEXT = "intro\n<!-- generated:perf -->\nold\n<!-- /generated:perf -->\nhand-written\n<!-- generated:other -->\nx\n<!-- /generated:other -->\n"


def test_replace_block_rewrites_only_its_body():
    new = replace_block(TEXT, "perf", "| a |\n| 1 |")
    assert block(new, "perf") == "| a |\n| 1 |\n"
    assert block(new, "other") == "x\n"
    assert new.replace("| a |\n| 1 |\n", "old\n") == TEXT


def test_missing_block_is_a_clear_error():
    with pytest.raises(MissingBlockError, match="generated:results"):
        replace_block(TEXT, "results", "body")


def test_readme_results_section_is_what_the_script_makes_from_the_committed_outputs():
    from results_section import BLOCK, README, section

    assert block(README.read_text(), BLOCK) == section()


def test_readme_performance_section_is_the_committed_benchmark():
    """The README's performance block is exactly what ``make bench`` last wrote."""
    root = Path(__file__).resolve().parents[1]
    bench = (root / "experiments" / "results" / "bench.md").read_text()
    assert block((root / "docs" / "performance.md").read_text(), "performance") == bench
