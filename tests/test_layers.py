"""The floors of diffkit: which module may import which.

Every module stands on one floor (FLOORS below, top to bottom):

    4 faces       diffkit.cli, diffkit.lab, diffkit.demo, diffkit.__main__ (and diffkit/__init__.py, which only
                  re-exports: nothing below may import it)
    3 front door  diffkit.runs
    2 services    diffkit.training, diffkit.metrics, diffkit.store
    1 core        samplers, schedules, the denoiser, the oracle, likelihood, prediction, cond, config
    0 ground      diffkit.nn, diffkit.data, diffkit.viz, diffkit.text, errors, devices, memory, machine, version

Imports go down the floors or sideways, never up and never in a circle. Every import counts, a function-local one
too: an import inside a function is allowed only for a heavy optional dependency (HEAVY) or one of the package's
modules that imports one at its top (HEAVY_AT_TOP), never to dodge a circle.
A heavy dependency is imported at module top level only by the modules in HEAVY_AT_TOP (those that are themselves
imported lazily), so `import diffkit` stays light. A name read from one of the package's own modules
(`plots.limits`, `from .plots import limits`) must be one that module defines (missing_attributes: a renamed
function's readers, however lazily they import it). The checker (import_graph, circles, floor_problems) takes a
root folder, a package name and a floors table; the last tests run it on tiny packages built in tmp_path.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "diffkit"
NAMES = {4: "faces", 3: "front door", 2: "services", 1: "core", 0: "ground"}
FLOORS = {  # module prefix -> floor; the longest matching prefix decides; the bare package name is only itself
    "diffkit": 4, "diffkit.cli": 4, "diffkit.lab": 4, "diffkit.demo": 4, "diffkit.__main__": 4,
    "diffkit.runs": 3,
    "diffkit.training": 2, "diffkit.metrics": 2, "diffkit.store": 2,
    "diffkit.sampling": 1, "diffkit.schedulers": 1, "diffkit.path_schedulers": 1, "diffkit.denoiser": 1, "diffkit.oracle": 1,
    "diffkit.likelihood": 1, "diffkit.schedule": 1, "diffkit.path": 1, "diffkit.prediction": 1, "diffkit.cond": 1,
    "diffkit.config": 1, "diffkit.straightness": 1,
    "diffkit.nn": 0, "diffkit.data": 0, "diffkit.viz": 0, "diffkit.text": 0, "diffkit.errors": 0,
    "diffkit.devices": 0, "diffkit.memory": 0, "diffkit.machine": 0, "diffkit.version": 0,
}
HEAVY = {"transformers", "fastapi", "uvicorn", "diffusers", "onnx", "onnxruntime", "peft", "matplotlib", "PIL",
         "mlxtend", "playwright", "starlette", "pydantic"}
HEAVY_AT_TOP = {"diffkit.lab.app", "diffkit.lab.explain", "diffkit.lab.job_routes", "diffkit.lab.requests",
                "diffkit.lab.sampling_routes", "diffkit.lab.guard", "diffkit.lab.playground", "diffkit.lab.uploads",
                # may import HEAVY at top level (they are only imported lazily)
                "diffkit.runs.onnx_sample",  # never imported: `diffkit export` copies it beside network.onnx
                "diffkit.nn.diffusers_pooled_unet"}  # copied into an exported pipeline's unet/; imported lazily by
                # nn/diffusers_unet.py to build an imported pooled U-Net


# --- the checker ---------------------------------------------------------------------------------------

def _modules(root: Path, package: str) -> dict[str, Path]:
    """module name -> its file (None for a folder of modules without __init__.py)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        for i in range(1, len(parts)):
            out.setdefault(".".join(parts[:i]), None)
    return out


def _walk(node, top=True):
    """(import statement, at module top level?) for every import in node, however deep."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, top
        yield from _walk(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _package_of(path: Path, module: str) -> list[str]:
    """The package a module's relative imports start from (itself for an __init__.py), as name parts."""
    return module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]


def _from_base(node: ast.ImportFrom, here: list[str]) -> str:
    """The module a `from X import ...` statement names, its dots resolved against the package `here`."""
    base = here[:len(here) - node.level + 1] if node.level else []
    return ".".join(base + ([node.module] if node.module else []))


def raw_imports(path: Path, module: str):
    """(candidate module names, most precise first; line; top level?) for every import in the file."""
    here = _package_of(path, module)
    for node, top in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (([alias.name], node.lineno, top) for alias in node.names)
            continue
        base = _from_base(node, here)
        for alias in node.names:
            yield [f"{base}.{alias.name}", base], node.lineno, top


def import_graph(root: Path, package: str) -> dict[str, list[tuple[str, int]]]:
    """module -> [(package module it imports, line)]; `from .x import y` is x.y when y is a module, else x."""
    modules = _modules(root, package)
    graph = {module: [] for module in modules}
    for module, path in modules.items():
        for names, line, _ in raw_imports(path, module) if path else ():
            if names[-1] != package and not names[-1].startswith(package + "."):
                continue
            target = next((n for n in names if n in modules), None)
            while target is None:  # `import package.x.f`: the longest prefix that is a module
                names = [names[-1].rpartition(".")[0]]
                target = names[0] if names[0] in modules else None
            if target != module and (target, line) not in graph[module]:
                graph[module].append((target, line))
    return graph


def circles(graph) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def floor_of(module: str, package: str, floors: dict) -> int | None:
    keys = [k for k in floors if k == module or (k != package and module.startswith(k + "."))]
    return floors[max(keys, key=len)] if keys else None


def floor_problems(root: Path, package: str, floors: dict) -> list[str]:
    """Modules with no floor, and every import from a floor to a higher one (file, line, both floors)."""
    modules, out = _modules(root, package), []
    for module, edges in sorted(import_graph(root, package).items()):
        where = modules[module].relative_to(root).as_posix() if modules[module] else module
        low = floor_of(module, package, floors)
        if low is None:
            out += [f"{where} has no floor in tests/test_layers.py's FLOORS table"] if modules[module] else []
            continue
        for target, line in edges:
            high = floor_of(target, package, floors)
            if high is not None and high > low:
                out.append(f"{where}:{line} imports {target}: floor {low} ({NAMES.get(low, low)}) -> "
                           f"floor {high} ({NAMES.get(high, high)})")
    return out


def _cycle_text(graph, component: list[str]) -> str:
    """One concrete circle through the component's first module, with the line of each import."""
    inside, start = set(component), component[0]
    paths, seen = [[(start, 0)]], {start}
    while paths:  # breadth first: the shortest way back to start
        path = paths.pop(0)
        for target, line in graph[path[-1][0]]:
            if target == start:
                return " -> ".join(f"{m} (line {l})" if i else m for i, (m, l) in enumerate(path + [(target, line)]))
            if target in inside and target not in seen:
                seen.add(target)
                paths.append(path + [(target, line)])
    return ", ".join(component)


# --- diffkit -------------------------------------------------------------------------------------------

def test_no_import_circles():
    graph = import_graph(ROOT, PACKAGE)
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(
        f"{', '.join(c)}\n    e.g. {_cycle_text(graph, c)}" for c in found)


def test_no_import_from_a_floor_above():
    problems = floor_problems(ROOT, PACKAGE, FLOORS)
    assert not problems, "\n".join(problems)


def missing_modules(root: Path, package: str) -> list[str]:
    """Imports of the package's own modules that do not exist (a module moved, its importer not updated)."""
    modules = _modules(root, package)
    return [f"{path.relative_to(root).as_posix()}:{line} imports {names[-1]}, which does not exist"
            for module, path in sorted(modules.items()) if path
            for names, line, _ in raw_imports(path, module)
            if (names[-1] == package or names[-1].startswith(package + ".")) and names[-1] not in modules]


def test_every_import_of_the_package_names_a_module_that_exists():
    missing = missing_modules(ROOT, PACKAGE)
    assert not missing, "\n".join(missing)


def missing_attributes(root: Path, package: str) -> list[str]:
    """`module.name` read in the package where `module` is one of its own modules, bound by an import, and `name`
    is neither defined there nor a submodule (a function renamed, a reader not updated): the names each module
    defines are read from its source (top-level defs, classes, assignments, imports), so nothing is imported."""
    modules = _modules(root, package)

    @functools.cache
    def defined(module: str) -> set[str]:
        names = {m.rpartition(".")[2] for m in modules if m.rpartition(".")[0] == module}  # submodules
        for node in ast.parse(modules[module].read_text()).body if modules[module] else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.If, ast.Try)):
                names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        return names

    out = []
    for module, path in sorted(modules.items()):
        if not path:
            continue
        tree, here = ast.parse(path.read_text()), _package_of(path, module)
        bound = {}  # local name -> package module
        for node, _ in _walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _from_base(node, here)
                bound |= {a.asname or a.name: f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
                out += [(path, node.lineno, (f"{path.relative_to(root).as_posix()}:{node.lineno} imports {a.name} "
                                             f"from {base}, which does not define it"))
                        for a in node.names if base in modules and a.name != "*" and a.name not in defined(base)]
            else:
                bound |= {a.asname: a.name for a in node.names if a.asname and a.name in modules}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                    and node.attr not in defined(bound[node.value.id]):
                text = (f"{path.relative_to(root).as_posix()}:{node.lineno} reads {node.value.id}.{node.attr}, "
                        f"which {bound[node.value.id]} does not define")
                out.append((path, node.lineno, text))
    return [text for *_, text in sorted(out)]


def test_every_name_read_from_a_module_of_the_package_exists():
    missing = missing_attributes(ROOT, PACKAGE)
    assert not missing, "\n".join(missing)


LAZY_OK = ("diffkit.cli", "diffkit.lab", "diffkit.demo")  # faces: `diffkit --help` and a parse error stay fast


def test_function_local_imports_of_the_package_only_in_the_faces():
    """Below the faces an import of diffkit's own modules sits at the top of the file: a function-local one could
    only be hiding a circle. (Except a module of HEAVY_AT_TOP: it imports a heavy dependency at its top, so it is
    imported where it is needed.)"""
    hidden = [f"{path.relative_to(ROOT).as_posix()}:{line} imports {names[-1]} inside a function"
              for module, path in _modules(ROOT, PACKAGE).items()
              if path and not module.startswith(LAZY_OK)
              for names, line, top in raw_imports(path, module)
              if not top and (names[-1] == PACKAGE or names[-1].startswith(PACKAGE + "."))
              and names[-1] not in HEAVY_AT_TOP]
    assert not hidden, "\n".join(hidden)


def test_heavy_dependencies_only_at_the_top_of_lazily_imported_modules():
    offenders = [f"{path.relative_to(ROOT).as_posix()}:{line} imports {names[-1]} at top level"
                 for module, path in _modules(ROOT, PACKAGE).items() if path and module not in HEAVY_AT_TOP
                 for names, line, top in raw_imports(path, module) if top and names[-1].split(".")[0] in HEAVY]
    assert not offenders, "\n".join(offenders) + ("\n(import it inside the function that needs it, or add a "
                                                  "module imported only lazily to HEAVY_AT_TOP)")


# --- the checker on tiny packages ----------------------------------------------------------------------

def _package(tmp_path: Path, files: dict) -> Path:
    for name, text in files.items():
        (tmp_path / "tiny" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tiny" / name).write_text(text)
    return tmp_path


def test_a_circle_through_a_function_local_import_is_found(tmp_path):
    root = _package(tmp_path, {"__init__.py": "from .b import g\n",
                               "a.py": "def f():\n    from . import b\n    return b.g()\n",
                               "b.py": "from . import a\n\ndef g():\n    return 1\n",
                               "c.py": "from .b import g\nfrom tiny.a import f\n"})
    graph = import_graph(root, "tiny")
    assert graph["tiny.a"] == [("tiny.b", 2)] and graph["tiny.c"] == [("tiny.b", 1), ("tiny.a", 2)]
    assert circles(graph) == [["tiny.a", "tiny.b"]]  # the __init__ that re-exports from b is not in it
    assert _cycle_text(graph, ["tiny.a", "tiny.b"]) == "tiny.a -> tiny.b (line 2) -> tiny.a (line 1)"


def test_an_import_from_a_floor_above_and_an_unplaced_module_are_reported(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "low.py": "import os\n\ndef f():\n    from .top.high import h\n",
                               "top/__init__.py": "",
                               "top/high.py": "from ..low import f\nfrom tiny import low\n\ndef h():\n    return f()\n",
                               "stray.py": "from . import low\n"})
    floors = {"tiny": 1, "tiny.low": 0, "tiny.top": 1}
    assert missing_modules(root, "tiny") == [] and missing_attributes(root, "tiny") == []
    (root / "tiny" / "stray.py").write_text("from . import low\nfrom .top import high as h\nlow.f()\nlow._f()\nh.g\n"
                                            "def k():\n    from .low import _g\n")
    assert missing_attributes(root, "tiny") == ["tiny/stray.py:4 reads low._f, which tiny.low does not define",
                                                "tiny/stray.py:5 reads h.g, which tiny.top.high does not define",
                                                "tiny/stray.py:7 imports _g from tiny.low, which does not define it"]
    (root / "tiny" / "stray.py").write_text("from .gone import x\n")
    assert missing_modules(root, "tiny") == ["tiny/stray.py:1 imports tiny.gone, which does not exist"]
    (root / "tiny" / "stray.py").write_text("from . import low\n")
    assert floor_problems(root, "tiny", floors) == [
        "tiny/low.py:4 imports tiny.top.high: floor 0 (ground) -> floor 1 (core)",
        "tiny/stray.py has no floor in tests/test_layers.py's FLOORS table"]
