"""The packages form one-way layers (docs/DESIGN.md section 1):

    actors  <-  coordinator  <-  clerk  <-  raftline  <-  tests

Each layer imports only from the layers to its left, and no set of modules
imports itself around a cycle. Checked on the source by parsing it, counting
imports inside functions too: a lazy import is still a dependency."""

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["actors", "coordinator", "clerk", "raftline", "tests"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the nodes under `if TYPE_CHECKING:`: names for annotations only,
    never imported at run time."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every project module `source` imports, resolving relative imports."""
    found = set()
    tree = ast.parse(source)
    annotations_only = type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # `from package import module` depends on the submodule itself.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in LAYERS}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for layer in LAYERS for path in (ROOT / layer).rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        imports = imported_modules(path.read_text(), module, path.name == "__init__.py")
        graph[module] = {name for name in imports if name in paths and name != module}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    def layer(module):
        return LAYERS.index(module.split(".")[0])

    return sorted(f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts if layer(dst) > layer(src))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """A cycle of imports, if there is one (graphlib finds one at a time)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return [sorted(set(error.args[1]))]
    return []


def package_import_without_its_init(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing `a.b.c` runs `a/__init__` too, but a package's __init__
    re-exporting its own submodules is not a cycle worth reporting: drop
    edges from a package to the modules inside it."""
    return {src: {dst for dst in dsts if not dst.startswith(src + ".")} for src, dsts in graph.items()}


def test_every_layer_imports_only_from_the_layers_below_it():
    assert upward_imports(import_graph()) == []


def test_no_modules_import_each_other_in_a_cycle():
    assert cycles(package_import_without_its_init(import_graph())) == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"actors.a": {"coordinator.b"}, "coordinator.b": {"actors.a"}, "clerk.c": {"actors.a"}}
    assert upward_imports(graph) == ["actors.a -> coordinator.b"]
    assert cycles(graph) == [["actors.a", "coordinator.b"]]
    lazy = "def f():\n    from clerk.client import connect\n"
    assert imported_modules(lazy, "coordinator.system", False) == {"clerk.client", "clerk.client.connect"}
    annotation = "if TYPE_CHECKING:\n    from clerk.client import Store\n"
    assert imported_modules(annotation, "coordinator.system", False) == set()
    relative = "from .node import RaftNode\n"
    assert imported_modules(relative, "actors.raft", True) == {"actors.raft.node", "actors.raft.node.RaftNode"}


def test_no_test_module_imports_another_test_module():
    """Shared helpers live in conftest or helper modules, so each test module can be read (and run) alone."""
    graph = import_graph()
    borrowed = sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        for dst in dsts
        if src.startswith("tests.") and dst.startswith("tests.") and dst.rsplit(".", 1)[-1].startswith("test_")
    )
    assert borrowed == []
