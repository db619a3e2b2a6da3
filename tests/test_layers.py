"""The package's layers (docs/architecture.md): every import — static, inside functions, or by
``importlib.import_module("...")`` — goes to the same layer or one listed before it, and the
module import graph has no cycle.

The graph is derived from the source text (``ast``), so the test sees imports that never run
in the suite as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import robustscope

ROOT = Path(robustscope.__file__).parent

#: the layers in order; a module may import only from its own layer and those before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "utilities",
        (
            "robustscope",
            "robustscope.errors",
            "robustscope.device",
            "robustscope.io",
            "robustscope.params",
            "robustscope.registry",
            "robustscope.numerics",
            "robustscope.progress",
        ),
    ),
    ("data", ("robustscope.data",)),
    ("models", ("robustscope.models", "robustscope.evaluation", "robustscope.checkpoint")),
    ("attacks", ("robustscope.attacks", "robustscope.corruptions")),
    ("training", ("robustscope.training",)),
    ("probes", ("robustscope.probes", "robustscope.transfer", "robustscope.visual")),
    ("posthoc/theory", ("robustscope.posthoc", "robustscope.theory")),
    ("composition", ("robustscope.plugins",)),
    ("studies", ("robustscope.studies",)),
    ("trackers", ("robustscope.trackers",)),
    ("report", ("robustscope.report",)),
    ("cli", ("robustscope.cli", "robustscope.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return best


def resolve(name: str) -> str | None:
    """The robustscope module ``name`` refers to (a submodule when one exists)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every robustscope import in ``module``'s source."""
    path = MODULES[module]
    return imports_in(path.read_text(), module, is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every robustscope import in ``source``, the text of
    ``module``: import statements, ``importlib.import_module("…")`` and module names in
    strings."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{a.name}" for a in node.names] or [base]
            targets = [t if resolve(t) == t else base for t in targets]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in MODULES
            and node.value != "robustscope"
        ):
            # a module named in a string (a provider table, a lazy import by name): the code
            # depends on that module as much as an import statement does
            targets = [node.value]
        for t in targets:
            if t.split(".")[0] == "robustscope" and (r := resolve(t)) is not None:
                out.append((r, node.lineno))
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    for m in MODULES:
        layer_of(m)


def test_no_import_goes_up_the_layers() -> None:
    bad = []
    for m, deps in GRAPH.items():
        for dep, line in deps:
            if layer_of(dep) > layer_of(m):
                bad.append(
                    f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {dep} "
                    f"({LAYERS[layer_of(m)][0]} → {LAYERS[layer_of(dep)][0]})"
                )
    assert not bad, "imports that go up the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    edges = {m: {d for d, _ in deps if d != m} for m, deps in GRAPH.items()}
    # a package's __init__ re-exporting its submodules is not a cycle with them unless a
    # submodule imports the package back, which the graph shows as an edge into __init__
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" ⇄ ".join(c) for c in cycles)


def test_the_checker_sees_violations() -> None:
    """The checks above can fail: a synthetic upward import and cycle are caught."""
    assert layer_of("robustscope.training.loop") < layer_of("robustscope.probes.fisher")
    assert resolve("robustscope.attacks.gradient.PGD") == "robustscope.attacks.gradient"
    deps = {d for d, _ in GRAPH["robustscope.plugins"]}
    assert any(d.startswith("robustscope.probes") for d in deps), deps
    # a module named in a string counts as a dependency, as an importlib call does
    fake = 'import importlib\nPROVIDERS = {"h": "robustscope.posthoc"}\n'
    fake += 'importlib.import_module("robustscope.probes.fisher")\n'
    found = {d for d, _ in imports_in(fake, "robustscope.training.fake")}
    assert found == {"robustscope.posthoc", "robustscope.probes.fisher"}, found
