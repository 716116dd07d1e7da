"""The package graph is the data flow, and stays that way.

Every import in the library (module level and inside functions alike) is read with `ast` and checked
against the layers below: a package may import only from packages of a lower layer, never from a
package of its own layer or above, and no import cycle exists between packages or between the
modules of one package.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "salesrl_jax"

# data -> embed / features / sim -> arrays -> models -> run -> train | eval | infer -> bench | pipelines -> cli
LAYERS = {
    "_lazy": 0, "io": 0, "metrics": 0, "parallel": 0,  # knows nothing of conversations or models
    "help_text": 0,  # the command lines' --help (cli and scripts/)
    "data": 1,  # records, readers, writers, validation
    "embed": 2, "features": 2, "sim": 2,  # what is computed from records
    "arrays": 3, "env": 3,  # cached per-turn arrays, batching, the validation split; the simulator as a JAX env
    "models": 4,  # Flax modules and predictions over arrays
    "run": 5,  # a run's config and the trained-model artefact (below train and infer alike)
    "train": 6, "eval": 6, "baselines": 6,  # train never imports eval or infer, nor they train
    "guidance": 6,  # policies trained in the environment, reading a trained model's state (view "model")
    "infer": 7, "configs": 7,  # the Scorer serves a guidance policy beside the model; configs name guidance's
    "bench": 8, "pipelines": 8,
    "cli": 9,
    "__init__": 10,  # the package's lazy public API
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for the library and its configs (installed as salesrl_jax.configs)."""
    found = {}
    for base, prefix in ((PACKAGE, "salesrl_jax"), (ROOT / "configs", "salesrl_jax.configs")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def _imports(path: Path, name: str) -> set[str]:
    """Absolute names of the library modules ``path`` imports (``from x import y`` counts y when it is a module)."""
    modules = _modules()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t.startswith("salesrl_jax"))
    return out


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _graph() -> dict[str, set[str]]:
    return {name: {t for t in _imports(path, name) if t != name} for name, path in _modules().items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_package_has_a_layer():
    packages = {_package_of(m) for m in _modules()}
    assert packages <= set(LAYERS), f"give these packages a layer in LAYERS: {sorted(packages - set(LAYERS))}"


def test_packages_import_only_from_lower_layers():
    bad = []
    for module, targets in _graph().items():
        source = _package_of(module)
        for target in targets:
            dest = _package_of(target)
            if dest != source and LAYERS[dest] >= LAYERS[source]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_or_inside_packages():
    graph = _graph()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(_package_of(module), set()).update(
            _package_of(t) for t in targets if _package_of(t) != _package_of(module))
    assert _find_cycle(packages) is None, f"package cycle: {_find_cycle(packages)}"
    # Inside a package; a package's __init__ re-exporting its modules is not a cycle of code.
    inner = {m: {t for t in ts if _package_of(t) == _package_of(m) and t.count(".") > 1}
             for m, ts in graph.items() if m.count(".") > 1}
    assert _find_cycle(inner) is None, f"module cycle: {_find_cycle(inner)}"


def test_the_checker_sees_a_forbidden_edge_and_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    edges = _graph()
    assert "salesrl_jax.run.trained_model" in edges["salesrl_jax.infer.scorer"]  # lazy and top-level imports read
    assert "salesrl_jax.models.predict" in edges["salesrl_jax.infer.archive"]  # (this one is inside a function)
    assert LAYERS[_package_of("salesrl_jax.eval.report")] >= LAYERS["train"]  # so train -> eval would fail


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert present == listed, f"pyproject.toml packages differ: missing {sorted(present - listed)}, " \
                              f"extra {sorted(listed - present)}"
