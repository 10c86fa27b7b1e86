"""Every documented command composes and validates; every documented link and path resolves.

The documentation is ``README.md`` and ``docs/*.md``. Every ``python train.py …`` written
there (in a fenced or indented code block, or in inline code), and every one in the comments
of ``trufl/conf/`` (where the presets document their variants), is composed with Hydra
in-process, as ``train.py`` would compose it, and checked by
:func:`trufl.config.validate_config`; nothing is trained and no data is read (validation
reads no files, so ``dataset.path=/data/text8`` is checked without the corpus). A multirun
(``-m``) is expanded exactly as the basic sweeper will and every job is validated
(:func:`trufl.config.validate_sweep`, what the ``ValidateJobs`` callback runs before a real
sweep); SLURM lines compose with the installed submitit launcher and are validated the same
way. A command with a placeholder ``<…>`` (``ckpt_path=outputs/train/<run>/…``) names a file
only a finished run has, so it cannot be composed as written: it is skipped, and nothing
else is. A command outside code, which cannot be copied reliably, is an error.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from trufl.cli import open_trainer_overrides
from trufl.config import ConfigError, validate_config
from trufl.multirun import validate_sweep

from .conftest import CONF, ROOT

COMMAND = "python train.py"
#: a placeholder the reader fills in: <run>, <overrides>, <p> …
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
SHELL_OPERATORS = {"&&", "||", "|", ";"}
#: top-level entries of the repository whose paths the text may name in inline code
REPO_DIRS = ("trufl/", "tests/", "conf/", "scripts/", "experiments/", "docs/", ".ci/")


def documentation(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# -- reading markdown ---------------------------------------------------------------------


def code_lines(text: str) -> list[bool]:
    """Per line: True inside a fenced (```/~~~) or indented (4 spaces after a blank or code
    line) code block."""
    flags, fence, prev_blank, prev_code = [], None, True, False
    for line in text.split("\n"):
        stripped = line.lstrip()
        if fence is not None:
            flags.append(True)
            if stripped.startswith(fence):
                fence = None
            prev_code, prev_blank = True, False
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            flags.append(True)
            prev_code, prev_blank = True, False
            continue
        indented = line.startswith("    ") and line.strip() and (prev_blank or prev_code)
        flags.append(bool(indented))
        prev_code = bool(indented) or (prev_code and not line.strip())
        prev_blank = not line.strip()
    return flags


INLINE = re.compile(r"(`+)(.+?)\1")


def inline_spans(line: str) -> list[str]:
    return [m.group(2).strip() for m in INLINE.finditer(line)]


def prose(line: str) -> str:
    """The line without its inline code."""
    return INLINE.sub(" ", line)


def commands(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` of every ``python train.py`` in ``path``: whole lines of
    code blocks (joined over a trailing backslash) and inline code spans. Raises when an
    occurrence is outside code."""
    lines = path.read_text().split("\n")
    is_code = code_lines("\n".join(lines))
    found, i = [], 0
    while i < len(lines):
        line, number = lines[i], i + 1
        if is_code[i]:
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            if COMMAND in line:
                found.append((number, line[line.index(COMMAND):].strip()))
        else:
            spans = [s for s in inline_spans(line) if COMMAND in s]
            found += [(number, s[s.index(COMMAND):]) for s in spans]
            if COMMAND in prose(line):
                raise AssertionError(f"{path.name}:{number}: '{COMMAND}' outside code cannot be checked: {line.strip()!r}")
        i += 1
    return found


def overrides_of(command: str) -> tuple[bool, list[str]]:
    """``(multirun, overrides)`` of one ``python train.py …`` command (a trailing ``# comment``
    and anything after a shell operator are not part of it)."""
    words = shlex.split(command, comments=True)
    assert words[:2] == COMMAND.split(), command
    args = []
    for word in words[2:]:
        if word in SHELL_OPERATORS:
            break
        args.append(word)
    multirun = any(a in ("-m", "--multirun") for a in args)
    # train.py's own flag (--dry-run: a sweep listed, not launched) and its opening of Trainer arguments
    args = open_trainer_overrides([a for a in args if a not in ("-m", "--multirun", "--dry-run")])
    flags = [a for a in args if a.startswith("-") and not a.startswith("~")]
    assert not flags, f"{command!r}: flags {flags} are not Hydra overrides; a documented command should be one the test can compose"
    return multirun, args


def check(command: str) -> int:
    """Compose and validate ``command`` as ``train.py`` would; the number of jobs checked.
    Raises :class:`ConfigError` (or Hydra's error) for a command that would not start."""
    multirun, overrides = overrides_of(command)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        if multirun:
            loader = GlobalHydra.instance().config_loader()
            return validate_sweep(loader.load_configuration("config", overrides, RunMode.MULTIRUN), loader)
        validate_config(compose("config", overrides=overrides))
        return 1


def config_comment_commands(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(file:line, command)`` of the commands written in the comments of ``trufl/conf/`` (the
    presets document their variants there)."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        for number, line in enumerate(path.read_text().split("\n"), 1):
            comment = line.partition("#")[2]
            if COMMAND in comment:
                out.append((f"{path.relative_to(root)}:{number}", comment[comment.index(COMMAND):].strip()))
    return out


def documented_commands(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(file:line, command)`` of every documented command, placeholders included."""
    pages = [(f"{path.relative_to(root)}:{n}", c) for path in documentation(root) for n, c in commands(path)]
    return pages + config_comment_commands(root)


ALL = documented_commands()
CHECKED = [(where, c) for where, c in ALL if not PLACEHOLDER.search(c)]


# -- the commands -------------------------------------------------------------------------


def test_the_documentation_has_commands_to_check():
    """The extraction found the README's usage block and the docs' commands (a broken
    extractor would otherwise pass every case by finding none)."""
    files = {where.split(":")[0] for where, _ in CHECKED}
    assert "README.md" in files and len(CHECKED) >= 20, ALL
    readme = (ROOT / "README.md").read_text()
    assert len([w for w, _ in ALL if w.startswith("README.md:")]) == readme.count(COMMAND)


@pytest.mark.parametrize("where,command", CHECKED, ids=[w for w, _ in CHECKED])
def test_documented_command_composes_and_validates(where, command):
    try:
        jobs = check(command)
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        pytest.fail(f"{where}: `{command}` would not start:\n{err}")
    assert jobs >= 1


def test_only_placeholders_are_skipped():
    skipped = [c for _, c in ALL if PLACEHOLDER.search(c)]
    assert all("<" in c and ">" in c for c in skipped)
    assert len(skipped) + len(CHECKED) == len(ALL)


def test_a_multirun_checks_every_job():
    assert check("python train.py -m flow=trufl,catnf,argmax seed=0,1,2") == 9


@pytest.mark.parametrize("typo", [
    "python train.py flow=trufl recon_wieght=10",                   # unknown top-level key
    "python train.py flow=trufel",                                  # unknown group option
    "python train.py flow=trufl flow.boundary_gradient=exakt",      # not one of the Literal's choices
    "python train.py -m flow=trufl,catnf trainer.max_steps=1500,abc",  # one bad job of four
    "python train.py experiment=sets prior=set_coupling latent_dim=2",  # the preset's Transformer keys left in
])
def test_a_typo_in_a_command_is_caught(typo):
    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)):
        check(typo)


def test_extraction_reads_code_blocks_inline_code_and_comments(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text with `python train.py flow=catnf` inline.\n\n"
        "```bash\n"
        "python train.py -m seed=0,1   # a sweep\n"
        "python train.py flow=trufl \\\n"
        "    recon_weight=10\n"
        "```\n\n"
        "    python train.py flow=argmax\n"
    )
    assert [c for _, c in commands(page)] == [
        "python train.py flow=catnf", "python train.py -m seed=0,1   # a sweep",
        "python train.py flow=trufl  recon_weight=10", "python train.py flow=argmax"]
    assert overrides_of("python train.py -m seed=0,1   # a sweep") == (True, ["seed=0,1"])
    page.write_text("Run python train.py flow=trufl to start.\n")
    with pytest.raises(AssertionError, match="outside code"):
        commands(page)


# -- links and paths ----------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML = re.compile(r"\b(?:src|href)=\"([^\"]+)\"")
SEE = re.compile(r"\bsee\s+`([^`]+)`", re.I)
EXTERNAL = ("http://", "https://", "mailto:")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the text (links and code unwrapped), lower case,
    without punctuation but hyphens and underscores, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text()
    is_code = code_lines(text)
    seen: dict[str, int] = {}
    out = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    for line, code in zip(text.split("\n"), is_code):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not code:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def references(path: Path) -> list[tuple[int, str, str]]:
    """``(line, kind, target)`` of every link (markdown, HTML) and every path named in
    inline code ("see `X`", or a path under one of the repository's folders), outside code
    blocks."""
    out = []
    for number, (line, code) in enumerate(zip(path.read_text().split("\n"), code_lines(path.read_text())), 1):
        if code:
            continue
        text = prose(line)
        out += [(number, "link", t) for t in LINK.findall(text) + HTML.findall(text)]
        named = {s for s in SEE.findall(line)} | {s for s in inline_spans(line) if s.startswith(REPO_DIRS)}
        out += [(number, "path", s) for s in sorted(named)]
    return out


def is_path_like(target: str) -> bool:
    """A concrete path (not a pattern, a placeholder or a command)."""
    return not re.search(r"[{}*<>…\s=]|\.\.\.", target) and ("/" in target or re.search(r"\.\w+$", target))


def ignored(path: Path) -> bool:
    """Ignored by git: a local artefact, not part of the repository (False without git)."""
    try:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True).returncode == 0
    except OSError:
        return False


def broken(root: Path = ROOT) -> list[str]:
    problems = []
    for page in documentation(root):
        for number, kind, target in references(page):
            where = f"{page.relative_to(root)}:{number}"
            if kind == "link":
                if target.startswith(EXTERNAL):
                    continue
                file, _, anchor = target.partition("#")
                dest = (page.parent / file).resolve() if file else page
            else:
                if not is_path_like(target):
                    continue
                file, anchor = target.rstrip("/"), ""
                dest = (root / file).resolve()
                if not dest.exists():
                    dest = (page.parent / file).resolve()
            if root.resolve() not in (dest, *dest.parents):
                problems.append(f"{where}: {target} points outside the repository")
            elif not dest.exists() or ignored(dest):
                problems.append(f"{where}: {target} does not resolve to a file in the repository")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: {target}: no heading with anchor #{anchor} in {dest.relative_to(root.resolve())}")
    return problems


def test_every_link_and_named_path_resolves():
    assert not broken(), "\n".join(broken())


def test_links_are_found_and_a_bad_one_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\nSee [design](docs/design.md#model), [gone](docs/gone.md), "
        "<img src=\"docs/x.png\">, see `trufl/nowhere.py`, [no anchor](docs/design.md#nothing).\n")
    (tmp_path / "docs" / "design.md").write_text("# Design\n\n## Model\n")
    (tmp_path / "docs" / "x.png").write_bytes(b"")
    problems = "\n".join(broken(tmp_path))
    assert "docs/gone.md does not resolve" in problems and "trufl/nowhere.py does not resolve" in problems
    assert "no heading with anchor #nothing" in problems
    assert "design.md#model" not in problems and "x.png" not in problems


def test_slug_is_githubs():
    assert slug("Renormalised prior and rejection sampling") == "renormalised-prior-and-rejection-sampling"
    assert slug("Metrics (names are fixed; loggers and `results.json` use exactly these)") == \
        "metrics-names-are-fixed-loggers-and-resultsjson-use-exactly-these"
    assert slug("TRUFL's toy result") == "trufls-toy-result"
