"""The package layers of ARCHITECTURE.md hold in the code: imports point down, never in a loop.

Read from the source with ``ast`` (imports inside functions and under TYPE_CHECKING count too),
so a new import that runs back up a layer fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recinc_cli"
#: Top layer first; a module may import its own layer and the ones after it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("api",),
    ("service",),
    ("bench",),
    ("training",),
    ("evaluation",),
    ("serving",),
    ("store",),
    ("models",),
    ("data",),
    ("config", "threads", "distributed", "compute", "progress", "failpoints", "errors", "__init__"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:  # a package's face: imported by its name
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of recinc_cli that ``path`` imports, as dotted names under recinc_cli.

    ``from recinc_cli.models import item_graph`` names the module ``models.item_graph``;
    ``from recinc_cli.models import MODELS`` names the package ``models``.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recinc_cli"):
            base = node.module.removeprefix("recinc_cli").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}".lstrip(".")
                found.add(sub if sub in modules else base or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("recinc_cli.") for a in node.names if a.name.startswith("recinc_cli.")}
    return found


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_imports_point_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for target in _imports(path, set(modules)):
            if target in modules and _layer(target) < _layer(module):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that run back up a layer: " + ", ".join(sorted(wrong))


def test_no_modules_import_each_other_in_a_loop() -> None:
    modules = _modules()
    graph = {m: {t for t in _imports(p, set(modules)) if t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    loops = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                loops.append(" -> ".join([*trail[trail.index(t) :], t]))
            elif t not in state:
                visit(t, [*trail, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not loops, "import loops: " + "; ".join(loops)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """A data module importing the store is caught (the check can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from recinc_cli.store.bundle import Bundle\n")
    assert "store.bundle" in _imports(bad, set(_modules())) and _layer("store.bundle") < _layer("data.bad")


def test_the_cli_starts_without_torch() -> None:
    """``recinc preprocess`` and ``--help`` start fast: importing the CLI and the API leaves
    torch (about 2 s) to the commands that need it."""
    import subprocess
    import sys

    code = "import sys, recinc_cli.cli.app, recinc_cli.api; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


#: What ``recommend`` and ``evaluate`` of an mf checkpoint never run, so never import (start-up
#: time): the other models and their libraries, training, preprocessing, progress bars (no tty).
NOT_FOR_MF = (
    "scipy",
    "lightgbm",
    "sklearn",
    "recinc_cli.models.ranker",
    "recinc_cli.models.sknn",
    "recinc_cli.models.ease",
    "recinc_cli.models.item_graph",
    "recinc_cli.models.sasrec",
    "recinc_cli.data.sequences",
    "recinc_cli.data.preprocess",
    "recinc_cli.training",
    "rich.progress",
)


def _imported_by(tmp_path: Path, *argv: object) -> set[str]:
    """``sys.modules`` after ``recinc ARGV`` ran to a zero exit in a fresh interpreter."""
    import os
    import subprocess
    import sys

    listing = tmp_path / "modules.txt"
    code = (
        "import sys\nfrom pathlib import Path\nfrom recinc_cli.cli.app import main\n"
        "out, sys.argv = Path(sys.argv[1]), ['recinc', *sys.argv[2:]]\n"
        "try:\n    main()\nfinally:\n    out.write_text('\\n'.join(sorted(sys.modules)))\n"
    )
    args = [sys.executable, "-c", code, listing, *map(str, argv)]
    run = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "RECINC_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return set(listing.read_text().split())


def _unneeded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_recommend_of_an_mf_model_imports_only_what_it_runs(pipeline, tmp_path: Path) -> None:
    """Issue 16: ``recommend`` of a small model is not dominated by imports. Loading an mf
    checkpoint imports the mf model alone (the registry imports a model on first lookup), and
    no evaluation code either."""
    modules = _imported_by(tmp_path, "recommend", pipeline.ckpt[10], "--users", "u00001", "-k", "3")
    assert "recinc_cli.models.mf" in modules  # the checkpoint was really loaded and scored
    assert _unneeded(modules, (*NOT_FOR_MF, "recinc_cli.evaluation")) == []


def test_evaluate_of_an_mf_model_imports_only_what_it_runs(pipeline, tmp_path: Path) -> None:
    """As above for ``evaluate`` (next-slice): no session protocol code either."""
    modules = _imported_by(tmp_path, "evaluate", pipeline.ckpt[10], pipeline.events["day11"])
    assert {"recinc_cli.models.mf", "recinc_cli.evaluation.metrics"} <= modules
    assert _unneeded(modules, (*NOT_FOR_MF, "recinc_cli.evaluation.sessions")) == []
