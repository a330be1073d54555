"""The shape of the code base: the library (`tru/`) has no import cycle and never imports the
orchestration layer (`flows`, `tasks`, `prefect`); the `tru` command (`tru/cli/`) is the top
floor, which may start flows. Imports are read from the source (AST), function-local ones
included, so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATION = ("flows", "tasks", "prefect")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def library_modules() -> dict[str, Path]:
    return {module_name(f): f for f in sorted((ROOT / "tru").rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports (absolute or relative), resolved to a module of `known`
    where one is named (`from pkg import mod` depends on pkg.mod), else the name itself."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = library_modules()
    known = set(mods)
    return {m: {d for d in imports_of(f, known) if d in known and d != m} for m, f in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_library_has_no_import_cycle():
    assert find_cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_cycle():
    # the check above has power: a two-module and a three-module loop are both found
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(find_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_the_library_never_imports_the_orchestration_layer():
    mods = library_modules()
    known = set(mods)
    bad = sorted(
        f"{m} -> {d}"
        for m, f in mods.items()
        if not (m == "tru.cli" or m.startswith("tru.cli."))
        for d in imports_of(f, known)
        if d.split(".")[0] in ORCHESTRATION
    )
    assert bad == []


def test_imports_are_resolved_relative_and_function_local(tmp_path, monkeypatch):
    # a lazy (function-local) relative import counts like a top-level one
    pkg = tmp_path / "tru" / "x"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    from flows import erasure\n")
    (pkg / "b.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert imports_of(pkg / "a.py", {"tru.x", "tru.x.a", "tru.x.b"}) == {"tru.x.b", "flows"}


# --- DVC stages depend on the code they run ------------------------------------------------------

# `tru` (tru/__init__.py) holds only the version; the CLI (tru/cli/) only parses options and
# prints: neither changes what a stage writes, so neither is a stage dependency
NOT_STAGE_CODE = ("tru",)


def stage_modules(cmd: str) -> set[str]:
    """The `tru.stages.*` modules whose functions the `tru ...` command of a DVC stage calls:
    the command is looked up in the CLI and its body read for the imports it makes."""
    import inspect
    import textwrap

    import typer

    from tru.cli import app

    group = typer.main.get_command(app)
    words = cmd.split()
    assert words[0] == "tru", cmd
    command = group
    for word in words[1:]:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    fn = inspect.unwrap(command.callback)
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    found = {
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("tru.stages")
    }
    assert found, f"{cmd}: its command imports no tru.stages function"
    return found


def closure(roots: set[str], graph: dict[str, set[str]]) -> set[str]:
    """Every library module that importing `roots` runs: their imports, transitively, and the
    packages (__init__) of each, which Python runs first."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen or m not in graph:
            continue
        seen.add(m)
        todo.extend(graph[m])
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return seen


def test_every_dvc_stage_depends_on_the_code_it_runs():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    graph = import_graph()
    files = library_modules()
    missing = {}
    for name, stage in stages.items():
        spec = stage.get("do", stage)
        deps = [d for d in spec.get("deps", []) if "${" not in d]
        for d in deps:
            if d.startswith(("tru/", "flows/", "tasks/")):
                assert (ROOT / d).exists(), f"{name}: code dependency {d} does not exist"
        code = closure(stage_modules(spec["cmd"]), graph) - set(NOT_STAGE_CODE)
        uncovered = sorted(
            str(files[m].relative_to(ROOT))
            for m in code
            if not any(
                files[m].relative_to(ROOT).as_posix() == d
                or files[m].relative_to(ROOT).as_posix().startswith(d.rstrip("/") + "/")
                for d in deps
            )
        )
        if uncovered:
            missing[name] = uncovered
    assert missing == {}, "dvc.yaml stages miss dependencies on the code they run"
