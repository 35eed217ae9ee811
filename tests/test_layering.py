"""The package's layering, asserted on its source: data flows specs -> ops -> cost -> engine -> faces, and no layer
reaches up or into another package's private names.

Each top-level unit of lvlmsim (a subpackage or a module) has a rank; a unit may import only units of a LOWER rank
(peers at the same rank stay independent). Every import counts, including those inside functions: a lazy import is
still a dependency. A new subpackage must be given its rank here, which is the point: where it sits is a decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lvlmsim"

RANK: dict[str, int] = {
    "errors": 0,
    "fmt": 0,
    "specs": 1,  # pydantic specs of models, hardware, workloads, scenarios; the registry of shipped YAMLs
    "ops": 2,  # the operator graph: FLOPs and bytes
    "importers": 2,  # config.json -> model spec
    "cost": 3,  # roofline, memory, runtime overheads
    "calibrate": 4,  # efficiency profiles, their fit and their resolution for a device
    "estimate": 4,  # one request, stage by stage
    "techniques": 5,  # transforms of the graph and hooks into the engine
    "api": 6,  # lvlmsim.estimate(): the public one-request face
    "engine": 6,  # the SimPy serving engine
    "planner": 7,  # sweep, capacity search, plan
    "bench": 8,  # benchmark clients' flags, datasets and result keys over the engine; the planner's deploy lines
    "cli": 9,  # faces
    "__init__": 10,  # the public API re-exported
    "__main__": 11,
}
APP_RANK = 11  # the Streamlit app is a face like the CLI: it may use the public API and every layer but the CLI


def _unit_of(module: str) -> str | None:
    """'lvlmsim.engine.cluster' -> 'engine'; 'lvlmsim' -> '__init__'; anything else -> None."""
    parts = module.split(".")
    if parts[0] != "lvlmsim":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
    return out


def _own_unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0].removesuffix(".py")


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.relative_to(PACKAGE).parts)


def _violations(path: Path, unit: str, rank: int) -> list[str]:
    bad = []
    for line, module, names in sorted(_imports(path)):
        target = _unit_of(module)
        if target is None or target == unit:
            continue
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{line}"
        if target not in RANK:
            bad.append(f"{where}: imports unknown unit lvlmsim.{target} (give it a rank in tests/test_layering.py)")
            continue
        if RANK[target] >= rank:
            bad.append(f"{where}: {unit} (rank {rank}) imports {module} (rank {RANK[target]}): upward or sideways")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        private += [p for p in module.split(".") if p.startswith("_") and not p.startswith("__")]
        if private:
            bad.append(f"{where}: imports private name(s) {', '.join(private)} of {module} across packages")
    return bad


def test_every_unit_of_the_package_has_a_rank():
    """A new subpackage or top-level module is placed in the layering on purpose, not by accident."""
    units = {_own_unit(p) for p in _package_files()}
    assert units - set(RANK) == set(), f"give these units a rank in tests/test_layering.py: {units - set(RANK)}"


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_imports_point_down_the_layers(path: Path):
    unit = _own_unit(path)
    assert _violations(path, unit, RANK.get(unit, -1)) == []


def test_app_is_a_face_over_the_public_layers():
    """The explorer uses the Python API like any user would: no CLI code, no private names."""
    files = sorted((REPO / "app").rglob("*.py"))
    bad = [v for p in files for v in _violations(p, "app", APP_RANK)]
    bad += [f"{p.relative_to(REPO)}:{line}: imports {m}" for p in files for line, m, _ in _imports(p)
            if _unit_of(m) == "cli"]
    assert bad == []


def test_the_checker_catches_an_upward_and_a_private_import(tmp_path: Path):
    """The rule itself can fail: an ops module importing the engine, and a private name taken across packages."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from lvlmsim.engine.cluster import Cluster\n"
                     "from lvlmsim.specs.base import _private\nfrom lvlmsim.ops.graph import _same_unit_is_fine\n")
    found = _violations(probe, "ops", RANK["ops"])
    assert len(found) == 2, found
    assert "upward" in found[0] and "_private" in found[1], found
