"""The package's house rules, checked on its source files.

(The dependency direction between packages is checked by import-linter,
``lint-imports`` in ``make test``, from ``.importlinter``.)
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_autorep"
ADAPTERS = PACKAGE / "adapters"
MAX_LINES = 400
# Private internals of Keras, TensorFlow and keras-tuner.
PRIVATE_INTERNALS = re.compile(
    r"keras\.src\b|keras_tuner\.src\b|tensorflow\.python\b"
    r"|\._inbound_nodes\b|\._outbound_nodes\b|\._keras_history\b"
    r"|\._initial_epoch\b"
)
SOURCES = sorted(PACKAGE.rglob("*.py"))


def relative(path):
    return str(path.relative_to(PACKAGE.parent))


def test_there_are_sources():
    assert len(SOURCES) > 40


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_private_internals_only_in_adapters(path):
    if ADAPTERS in path.parents:
        return
    hits = [
        f"{relative(path)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_INTERNALS.search(line)
    ]
    assert not hits, "use keras_autorep.adapters instead:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{relative(path)} has {lines} lines"


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_no_private_names_imported_across_modules(path):
    tree = ast.parse(path.read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("keras_autorep")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private, f"{relative(path)} imports {private}"


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_no_reference_to_documents_outside_the_repository(path):
    assert "DESIGN.md" not in path.read_text(), relative(path)
