"""The import graph of the source tree, read from the files (ast), and the checks on it.

Every `import` and `from ... import` counts, at any depth: a lazy import inside a function is
an arrow too, it only runs later. Modules are named as installed (`serving/app.py` is
`vistas.serving.app`, by pyproject's package-dir). An import of `pkg.name` counts as an arrow to
the submodule `pkg.name` when that is a module, else to `pkg` (a name defined in its __init__);
the implicit import of a parent package is not counted (every package's __init__ would be in a
cycle with its own submodules otherwise).
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    source: str  # module that imports
    target: str  # module imported (ours or third-party top-level name)
    file: Path
    line: int


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """{package name: folder} from pyproject's [tool.setuptools] package-dir."""
    config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    return {name: pyproject.parent / folder for name, folder in config["package-dir"].items()}


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """{module name: file} for every .py file under the mapped folders (disjoint folders)."""
    found: dict[str, Path] = {}
    for name, folder in roots.items():
        for file in sorted(folder.rglob("*.py")):
            parts = file.relative_to(folder).with_suffix("").parts
            found[".".join((name, *parts)).removesuffix(".__init__")] = file
    return found


def imports(mods: dict[str, Path], ours: tuple[str, ...] = ("vistas", "vistas_client")) -> list[Import]:
    """Every import statement of every module, resolved to a module name."""
    out: list[Import] = []
    for mod, file in mods.items():
        is_package = file.name == "__init__.py"
        package = mod if is_package else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                out += [Import(mod, _resolve(a.name, mods), file, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    out.append(Import(mod, full if full in mods else _resolve(base, mods), file, node.lineno))
    return [i for i in out if i.target.split(".")[0] in ours or i.source.split(".")[0] in ours]


def _resolve(name: str, mods: dict[str, Path]) -> str:
    """The longest prefix of `name` that is one of our modules; a third-party name as it is."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in mods:
            return ".".join(parts[:n])
    return name


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursive: the graph has a few hundred nodes
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
