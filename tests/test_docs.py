"""The documentation: the strict MkDocs build, a short README, every page in the nav, every picture there,
and every measured table beside the machine and the benchmark command that produced it. Offline."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MACHINE_WORDS = ("Xeon", "EPYC", "machine:")


def nav_pages() -> set[str]:
    """The .md files named in mkdocs.yml's `nav:` block (read as text: no YAML library needed)."""
    pages, in_nav = set(), False
    for line in (ROOT / "mkdocs.yml").read_text().splitlines():
        if re.match(r"^nav\s*:", line):
            in_nav = True
            continue
        if in_nav and line.strip() and not line[0].isspace() and not line.startswith("-"):
            break  # the next top-level key
        if in_nav:
            pages.update(re.findall(r"([\w./-]+\.md)\b", line))
    return pages


def test_mkdocs_strict_build(tmp_path):
    import material  # noqa: F401  (the docs extra, installed by `make test`: a missing one fails, never skips)
    import mkdocs  # noqa: F401
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_short_and_names_the_test_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines (at most 150): move the detail into docs/"
    assert any("make test" in line for line in lines), "README.md must state the test command `make test`"


def test_every_docs_page_is_in_the_nav():
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    missing = sorted(pages - nav_pages())
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"
    gone = sorted(nav_pages() - pages)
    assert not gone, f"mkdocs.yml's nav names pages that do not exist in docs/: {gone}"


def test_readme_pictures_exist():
    text = (ROOT / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text)
    assert pictures, "README.md shows no pictures"
    for src in pictures:
        assert (ROOT / src).is_file(), f"README.md shows {src}, which does not exist"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_measured_tables_name_machine_and_command(page):
    text = (DOCS / page).read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)  # a table is never inside a code block
    if not any(line.lstrip().startswith("|") for line in prose.splitlines()):
        return
    assert any(word in text for word in MACHINE_WORDS), (
        f"docs/{page} has a table but names no machine (one of {MACHINE_WORDS})")
    assert "benchmarks/" in text, f"docs/{page} has a table but names no benchmark command (benchmarks/...)"


def doc_commands(text: str):
    """Every `diffkit ...` command of a page: the lines of its code blocks (continuations joined, comments cut) and
    its inline code spans."""
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("diffkit "):
                yield re.split(r"\s#\s", line.strip())[0]
    yield from (span.replace("\n", " ") for span in re.findall(r"`(diffkit [^`]+)`", text))


def test_every_concrete_command_in_the_docs_parses():
    """A renamed or removed flag leaves no stale command behind: each command of README.md and docs/ (those without
    a usage synopsis's placeholders, [optional] parts or a|b choices) parses with diffkit's own parser. Prose may
    shorten a command, so a missing required flag is allowed, and so is a flag named last without its value
    (`diffkit edit --resample`); an unknown flag or a bad value is not."""
    import shlex

    from diffkit.cli.args import build_parser
    from diffkit.errors import DiffkitError

    parser, checked, stale = build_parser(), 0, []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for command in doc_commands(path.read_text()):
            try:
                argv = shlex.split(command)[1:]
            except ValueError as e:  # an unbalanced quote
                stale.append(f"{path.relative_to(ROOT)}: `{command}`: {e}")
                continue
            if any(re.search(r"[\[\]|]|^[A-Z][A-Z0-9_.]*$", a) for a in argv):
                continue  # a synopsis: placeholders, optional parts, choices
            checked += 1
            for _ in range(4):  # argparse names a missing required flag before an unknown one: give it, parse again
                try:
                    parser.parse_args(argv)
                    break
                except DiffkitError as e:
                    missing = re.findall(r"--[\w-]+", str(e).split(" (see")[0]) if "required" in str(e) else []
                    if missing:
                        argv += [missing[0], "x"]
                        continue
                    supplied = [f"argument {a}:" for a, v in itertools.pairwise(argv) if v == "x"]
                    if any(s in str(e) for s in supplied):
                        break  # the placeholder value of a flag the command left out does not fit its type
                    if f"argument {argv[-1]}: expected one argument" not in str(e):
                        stale.append(f"{path.relative_to(ROOT)}: `{command}`: {e}")
                    break
    assert checked >= 100 and not stale, "\n".join(stale)
