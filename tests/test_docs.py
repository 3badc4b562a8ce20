"""The docs travel with the code: every link in README.md and docs/ leads somewhere in this repository,
nothing points outside the clone, and every environment variable the gate reads is documented."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INDENTED_BLOCK = re.compile(r"(?:^(?: {4}|\t).*\n?)+", re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside code: a `[x](y)` inside a code sample is not a link."""
    text = FENCE.sub("", text)
    text = INDENTED_BLOCK.sub("", text)
    return INLINE_CODE.sub("", text)


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """The ids GitHub gives a Markdown file's headings: lowercase, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    ids = set()
    for title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def test_the_docs_are_there():
    names = {path.relative_to(ROOT).as_posix() for path in DOCS}
    assert {"README.md", "docs/api.md", "docs/architecture.md", "docs/operations.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nothing_points_outside_the_clone(path):
    text = path.read_text(encoding="utf-8")
    found = [where for where in ("../shared", "/work/shared") if where in text]
    assert not found, f"{path.name} refers to {found}, which a clone of this repository does not have"


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:: outside the repository by design
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if root not in linked.parents and linked != root:
            broken.append(f"{target} (leaves the repository)")
        elif not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading in {linked.name})")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_here(path):
    broken = broken_links(path)
    assert not broken, f"{path.name}: broken links: {broken}"


def test_the_link_checker_sees_links_and_broken_ones(tmp_path):
    """The checks above would pass on nothing at all: show they find links, and that bad ones are caught."""
    assert any(link.startswith("docs/") for link in links(ROOT / "README.md"))
    (tmp_path / "other.md").write_text("# Other page\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\nSee [a](missing.md), [b](#a-page), [c](other.md#other-page), [d](other.md#nowhere),\n"
        "[e](../outside.md) and [f](https://example.com/).\n\n```\n[not](a-link.md)\n```\n"
    )
    assert links(page) == ["missing.md", "#a-page", "other.md#other-page", "other.md#nowhere", "../outside.md",
                           "https://example.com/"]
    assert broken_links(page, root=tmp_path) == [
        "missing.md (no such file)", "other.md#nowhere (no such heading in other.md)",
        "../outside.md (leaves the repository)",
    ]


def variables_read_by_config() -> set[str]:
    """Names read from the environment in gateway/config.py: env.get("X"), env["X"], helper(env, "X", …)."""
    tree = ast.parse((ROOT / "gateway" / "config.py").read_text(encoding="utf-8"))
    names = set()

    def is_env(node) -> bool:
        return isinstance(node, ast.Name) and node.id == "env"

    def name_of(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.value):
            return node.value
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and is_env(node.func.value) and node.args:
                names.add(name_of(node.args[0]))
            for first, second in zip(node.args, node.args[1:]):
                if is_env(first):
                    names.add(name_of(second))
        elif isinstance(node, ast.Subscript) and is_env(node.value):
            names.add(name_of(node.slice))
    names.discard(None)
    return names


def test_every_environment_variable_is_in_the_operations_notes():
    read = variables_read_by_config()
    assert {"DATABASE_URL", "SECRET_KEY", "GATEWAY_FAILURE_MODE", "GATEWAY_SYNC_INTERVAL"} <= read  # the parser works
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(name for name in read if not re.search(rf"\b{name}\b", operations))
    assert not missing, f"docs/operations.md does not describe {missing}"
