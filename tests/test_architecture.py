"""The layering rule and the public names, checked from the source itself."""

from __future__ import annotations

import ast
import itertools
import warnings
from pathlib import Path

import pytest

import recforget

SRC = Path(recforget.__file__).parent
# lower layers first; a module may import its own layer and the ones before it
LAYERS = ["kernels", "data", "models", "unlearn", "evaluate", "interop", "service", "spark", "cli"]


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every recforget module -> the recforget modules it imports (function-level too)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = _module(path)
        found: set[str] = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # annotations-only imports are no dependency
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("recforget"):
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("recforget"))
        graph[name] = found
    known = set(graph)
    return {m: {t for t in ts if t in known and t != m} for m, ts in graph.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for module, targets in _imports().items():
        own = _layer(module)
        if own is None:
            continue
        for target in targets:
            theirs = _layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(own):
                bad.append(f"{module} -> {target}")
    assert not bad, "imports from a higher layer:\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]], prefix: str) -> list[list[str]]:
    nodes = {m for m in graph if m.startswith(prefix)}
    seen: set[str] = set()
    out = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node] & nodes):
            if nxt in path:
                out.append([*path[path.index(nxt) :], nxt])
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, [*path, nxt])

    for start in sorted(nodes):
        if start not in seen:
            seen.add(start)
            visit(start, [start])
    # a package importing its own submodules (re-exports) is not a circle
    return [c for c in out if not any(b.startswith(a + ".") for a, b in itertools.pairwise(c))]


@pytest.mark.parametrize("prefix", ["recforget.evaluate", "recforget.unlearn", "recforget.models"])
def test_no_import_circle_inside_a_layer(prefix):
    assert _cycles(_imports(), prefix) == []


def test_models_import_nothing_from_unlearning():
    graph = _imports()
    assert not {
        f"{m} -> {t}"
        for m, ts in graph.items()
        if m.startswith("recforget.models")
        for t in ts
        if t.startswith("recforget.unlearn")
    }


def test_unlearn_subpackage_is_importable_and_not_shadowed():
    import recforget.unlearn.ncf as ncf_methods  # the function no longer hides the package

    assert ncf_methods.__name__ == "recforget.unlearn.ncf"
    assert recforget.forget is recforget.unlearn.forget
    assert "alteraser" in recforget.unlearn.methods("ncf")


def test_the_old_spelling_still_works_with_a_warning():
    from recforget import ALS, DeletionRequest, Interactions

    pairs = [(u, i) for u in range(6) for i in range(5) if (u + i) % 2]
    data = Interactions.from_arrays([u for u, _ in pairs], [i for _, i in pairs])
    model = ALS(2, iterations=3, random_state=0).fit(data)
    request = DeletionRequest(users=[1])
    with pytest.warns(FutureWarning, match=r"recforget\.forget"):
        old = recforget.unlearn(model, None, request, "unlearn-als")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = recforget.forget(model, request, "unlearn-als")
    assert old.model.model_hash() == new.model.model_hash()


def test_data_is_keyword_only():
    from recforget import ALS, DeletionRequest, Interactions

    data = Interactions.from_arrays([0, 0, 1], [0, 1, 1])
    model = ALS(2, iterations=2, random_state=0).fit(data)
    with pytest.raises(TypeError):
        recforget.forget(model, data, DeletionRequest(users=[0]))  # type: ignore[misc]


def test_forgetting_an_als_model_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from recforget import ALS, DeletionRequest, Interactions, forget\n"
        "d = Interactions.from_csr((np.arange(30).reshape(6, 5) % 3 == 0).astype(float))\n"
        "m = ALS(2, iterations=2, random_state=0).fit(d)\n"
        "forget(m, DeletionRequest(users=[1]), 'unlearn-als')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
