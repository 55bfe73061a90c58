"""The README and docs/ stay true to the code: the CLI reference is generated, links resolve,
and the README stays a short front door that opens with its two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [
    "bash scripts/setup.sh && .venv/bin/lmforge run recipes/quickstart.yaml",
    "bash scripts/setup.sh && .venv/bin/python -m pytest",
]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks, in order."""
    return [block.rstrip("\n") for block in FENCE.findall(text)]


def prose(text: str) -> str:
    """The text without code blocks and inline code, where a `[x](y)` is not a link."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page (repeats get -1, -2, ...)."""
    found, counts = set(), {}
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(f"{slug}-{n}" if n else slug)
    return found


def test_cli_reference_is_current():
    """docs/cli.md is exactly what scripts/cli_docs.py makes from `--help` now (without torch)."""
    out = subprocess.run(
        [sys.executable, "scripts/cli_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.strip()  # says how to regenerate it


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(README.read_text())}
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_readme_is_a_short_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/ (limit 250)"


def test_readme_opens_with_its_two_commands():
    """The first two code blocks are the two commands, verbatim; CI runs the second."""
    assert code_blocks(README.read_text(encoding="utf-8"))[:2] == COMMANDS
    assert COMMANDS[1] in (ROOT / ".ci" / "run").read_text()


def test_architecture_page_names_every_package():
    """docs/architecture.md's layer picture names every package and module of src/lmforge/,
    and every layer of the import contracts, so the page follows the code."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = page.split("## Layers", 1)[1].split("```", 2)[1]
    src = ROOT / "src" / "lmforge"
    units = [p.name + "/" for p in src.iterdir() if (p / "__init__.py").exists()]
    units += [p.name for p in src.glob("*.py") if p.name != "__init__.py"]
    contracts = ROOT / ".importlinter"
    if contracts.exists():
        for name in set(re.findall(r"lmforge\.(\w+)", contracts.read_text())):
            units.append(name + "/" if (src / name).is_dir() else name + ".py")
    missing = sorted({u for u in units if not re.search(rf"(?<![\w/]){re.escape(u)}", picture)})
    assert not missing, f"docs/architecture.md's layer picture does not name: {missing}"
