"""The generated blocks (docs/results.md, docs/performance.md): only the text between the markers is rewritten."""

import pytest

from trufl.reporting.readme import MissingBlockError, block, replace_block
from trufl.reporting.repository import PERFORMANCE_PAGE, RESULTS_PAGE
from trufl.reporting.results_section import BLOCK, section

TEXT = "intro\n<!-- generated:perf -->\nold\n<!-- /generated:perf -->\nhand-written\n<!-- generated:other -->\nx\n<!-- /generated:other -->\n"


def test_replace_block_rewrites_only_its_body():
    new = replace_block(TEXT, "perf", "| a |\n| 1 |")
    assert block(new, "perf") == "| a |\n| 1 |\n"
    assert block(new, "other") == "x\n"
    assert new.replace("| a |\n| 1 |\n", "old\n") == TEXT


def test_missing_block_is_a_clear_error():
    with pytest.raises(MissingBlockError, match="generated:results"):
        replace_block(TEXT, "results", "body")


def test_results_page_section_is_what_the_script_makes_from_the_committed_outputs():
    assert block(RESULTS_PAGE.read_text(), BLOCK) == section()


@pytest.mark.parametrize("name,report", [("performance", "bench.md"), ("recipes", "bench_recipes.md"), ("launcher", "bench_launcher.md")])
def test_performance_page_sections_are_the_committed_benchmarks(name, report):
    """docs/performance.md's blocks are exactly what ``make bench`` / ``bench-recipes`` / ``bench-launcher`` last wrote."""
    bench = (PERFORMANCE_PAGE.parents[1] / "experiments" / "results" / report).read_text()
    assert block(PERFORMANCE_PAGE.read_text(), name) == bench
