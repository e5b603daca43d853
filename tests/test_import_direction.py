"""Imports run one way: train -> rftt -> search -> model -> kernels. A package may import
those to its right, never those to its left (nothing in search/ knows about RFTT)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["kernels", "model", "search", "rftt", "train"]  # each may import only those before it


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_layers_below_it(package):
    allowed = set(LAYERS[:LAYERS.index(package) + 1])
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(REPO)): sorted(_imported_packages(f) - allowed) for f in files}
    assert not {f: w for f, w in wrong.items() if w}


def test_the_check_sees_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nimport rftt.grading\nfrom train.sft import main\nfrom . import x\n"
                      "def f():\n    from search import engine\n")
    assert _imported_packages(sample) == {"rftt", "train", "search"}
