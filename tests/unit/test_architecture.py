"""The package map in docs/design.md, checked: imports run one way and the simulator stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "connector"

# Lower layers never import higher ones. Modules in one layer may import each other.
LAYERS: dict[str, int] = {
    "connector.errors": 0,
    "connector.redact": 0,
    "connector.crashpoints": 0,
    "connector.config": 0,
    "connector.config_keys": 0,
    "connector.config_sources": 0,
    "connector.logging_setup": 0,
    "connector.zoho": 1,
    "connector.lake": 2,
    "connector.readers": 3,
    "connector.run": 4,
    "connector.demo": 5,
    "connector.cli": 5,
    "connector.__main__": 5,
}
SIMULATOR = "connector.simulator"
# Only the commands that start the embedded simulator may import it.
SIMULATOR_USERS = {"connector.cli.simulator_commands", "connector.demo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every connector module a file imports, at any depth (imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "connector" or name.startswith("connector.")}


def _layer_key(module: str) -> str | None:
    for key in sorted(LAYERS, key=len, reverse=True):
        if module == key or module.startswith(key + "."):
            return key
    return None


SOURCES = sorted(PACKAGE_ROOT.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [
        _module_name(path)
        for path in SOURCES
        if _module_name(path) != "connector"
        and not _module_name(path).startswith(SIMULATOR)
        and _layer_key(_module_name(path)) is None
    ]
    assert unplaced == [], f"add these modules to a layer in docs/design.md and here: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_point_down_the_layers(path: Path) -> None:
    importer = _module_name(path)
    if importer == "connector" or importer.startswith(SIMULATOR):
        return
    own = LAYERS[_layer_key(importer) or ""]
    upward = []
    for imported in _imports(path):
        if imported.startswith(SIMULATOR):
            if importer not in SIMULATOR_USERS:
                upward.append(imported)
            continue
        key = _layer_key(imported)
        if key is not None and LAYERS[key] > own:
            upward.append(imported)
    assert upward == [], f"{importer} imports from a higher layer: {sorted(upward)}"


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if _module_name(p).startswith(SIMULATOR)], ids=_module_name
)
def test_simulator_imports_nothing_from_the_connector(path: Path) -> None:
    outside = {name for name in _imports(path) if not name.startswith(SIMULATOR)}
    outside.discard("connector")
    assert outside == set(), f"{_module_name(path)} imports {sorted(outside)}"
