"""The map of docs/architecture.md, kept: no import cycles, no import across the layers, no huge modules.

Every import of every module under appliance/ counts, function-level ones included, so a late
``import`` inside a function cannot hide a crossing.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 450

# (importer, imported): a module under the first package never imports one under the second.
FORBIDDEN = [
    ("appliance.http", "appliance.core"), ("appliance.http", "appliance.ssh"),
    ("appliance.http", "appliance.drivers"), ("appliance.http", "appliance.host"),
    ("appliance.ssh", "appliance.core"), ("appliance.ssh", "appliance.http"),
    ("appliance.ssh", "appliance.drivers"), ("appliance.ssh", "appliance.host"),
    ("appliance.core", "appliance.http"), ("appliance.core", "appliance.ssh"), ("appliance.core", "appliance.cli"),
    ("appliance.core", "appliance.lab"), ("appliance.core", "appliance.client"),
    # the user's client runs on laptops without the server's packages
    ("appliance.client", "appliance.core"), ("appliance.client", "appliance.http"),
    ("appliance.client", "appliance.ssh"), ("appliance.client", "appliance.drivers"),
    ("appliance.client", "appliance.host"),
    ("appliance.drivers", "appliance.core"), ("appliance.drivers", "appliance.cli"),
    ("appliance.host", "appliance.core"), ("appliance.host", "appliance.drivers"), ("appliance.host", "appliance.cli"),
]
# The shared top-level modules sit below every package.
SHARED = ["appliance.batching", "appliance.clientkey", "appliance.config", "appliance.contract", "appliance.errors",
          "appliance.filer", "appliance.gatewaykeys", "appliance.keep", "appliance.logs", "appliance.logsafe",
          "appliance.logship", "appliance.metrics", "appliance.metricsdir", "appliance.procs", "appliance.revert",
          "appliance.v1"]
PACKAGES = ["appliance.cli", "appliance.client", "appliance.lab", "appliance.http", "appliance.ssh", "appliance.core",
            "appliance.drivers",
            "appliance.host"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "appliance").rglob("*.py"):
        if "_pb2" in path.name:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in names:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not target.startswith(name + "."):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_module_imports_across_the_layers():
    crossings = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps
                 for a, b in FORBIDDEN if _under(m, a) and _under(d, b)]
    assert crossings == []


def test_the_shared_modules_import_no_package():
    graph = _graph()
    crossings = [f"{m} imports {d}" for m in graph if any(_under(m, s) for s in SHARED)
                 for d in graph[m] if any(_under(d, p) for p in PACKAGES)]
    assert crossings == []


def test_there_are_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_hand_written_module_is_over_450_lines():
    big = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_the_checks_see_a_crossing_and_a_cycle(tmp_path):
    """The checks above are not vacuous: a planted crossing and cycle are found."""
    (tmp_path / "a.py").write_text("from appliance.core import b\n")
    (tmp_path / "b.py").write_text("import appliance.http.a\n")
    known = {"appliance.http.a", "appliance.core.b"}
    assert _imports("appliance.http.a", tmp_path / "a.py", known) == {"appliance.core.b"}
    assert _imports("appliance.core.b", tmp_path / "b.py", known) == {"appliance.http.a"}
