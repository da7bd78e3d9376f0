"""Imports only go down the stack that docs/layout.md describes: a module of pfs may
import its own package, the packages below it and the bottom modules, never a
package above it or beside it; checked on the real source, every import
statement (inside functions and TYPE_CHECKING blocks too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PFS = Path(__file__).resolve().parent.parent / "pfs"

#: Top to bottom. `__main__` is `python -m pfs`; `pfs` is the package itself
#: (`import pfs`), which imports its API only by name, on first use.
LAYERS = [{"__main__"}, {"cli"}, {"mount"}, {"library"}, {"store"}, {"engine"}, {"volumes"}, {"crypto"}, {"registry"},
          {"codec", "units", "names", "extras", "failures", "threads"}, {"errors", "pfs"}, {"install", "redact"}]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The package or bottom module of pfs that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pfs"


def imported(tree: ast.AST, module: str, is_package: bool, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every pfs module an import statement names; `from pfs import x`
    names pfs.x where x is a module, else the package pfs itself."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}".split(".")[1:]
                is_module = (root.joinpath(*candidate).with_suffix(".py").exists()
                             or (root.joinpath(*candidate) / "__init__.py").exists())
                found.append((node.lineno, f"{base}.{alias.name}" if is_module else base))
    return [(line, name) for line, name in found if name == "pfs" or name.startswith("pfs.")]


def violations(root: Path) -> list[str]:
    """Every import under `root` (a pfs source tree) that goes up or sideways."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        mine = room(module)
        assert mine in LEVEL, f"{path}: the package {mine} has no place in LAYERS (docs/layout.md)"
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported(tree, module, path.name == "__init__.py", root):
            theirs = room(target)
            if theirs != mine and LEVEL.get(theirs, -1) <= LEVEL[mine]:
                bad.append(f"{path.relative_to(root.parent)}:{line}: {module} ({mine}) imports {target} ({theirs})")
    return bad


def test_imports_only_go_down() -> None:
    bad = violations(PFS)
    assert not bad, "imports that do not go down the layers of docs/layout.md:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from pfs.cli.output import Table\n", "pfs.cli.output (cli)"),       # up
    ("from pfs.engine import pool\n", "pfs.engine.pool (engine)"),        # sideways
    ("from ..store.core import Store\n", "pfs.store.core (store)"),        # up, relative
    ("def f():\n    import pfs.library.api\n", "pfs.library.api (library)"),  # inside a function
])
def test_the_check_names_an_import_that_goes_up(tmp_path: Path, source: str, expected: str) -> None:
    root = tmp_path / "pfs"
    for package in ("cli", "store", "engine", "library", "volumes"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    for module in ("cli/output", "store/core", "engine/pool", "library/api", "volumes/local"):
        (root / f"{module}.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "volumes" / "local.py").write_text(source)
    (root / "engine" / "engine.py").write_text("from pfs.volumes import local\nfrom pfs import errors\n")  # down: fine
    assert violations(root) == [f"pfs/volumes/local.py:{source.count(chr(10))}: pfs.volumes.local (volumes) "
                                f"imports {expected}"]
