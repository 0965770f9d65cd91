"""The import graph of fastnet, kernels and bench, read from their sources: the command-line modules
are leaves, the library reaches no command-line code, and the graph stays shallow."""

import ast
import functools

import pytest

from tests.helpers import ROOT

PACKAGES = ("fastnet", "kernels", "bench")
LIBRARY = ("fastnet.api", "fastnet.sklearn", "fastnet.datasets", "fastnet.export", "fastnet.run", "fastnet.recipe",
           "fastnet.training", "fastnet.model", "fastnet.checkpoint", "fastnet.data")
MAX_FLOORS = 8  # the longest chain of module-level imports, bench on top included


def module_files():
    """{module name: its source file} of the three packages."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


FILES = module_files()


def imports(name, module_level_only):
    """The project modules that module `name` imports (at module level only, or anywhere in it)."""
    path = FILES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body if module_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{source}.{alias.name}"
                found.add(target if target in FILES else source)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in FILES and m != name}


def commands():
    """The modules that run as `python -m`: they end with `if __name__ == "__main__":`."""
    return {name for name, path in FILES.items()
            if name.startswith("fastnet") and 'if __name__ == "__main__":' in path.read_text()}


def test_the_command_lines_are_the_ones_the_readme_names():
    assert commands() == {f"fastnet.{c}" for c in ("train", "evaluate", "predict", "show", "gradcheck")} | {
        "fastnet.export.__main__"}


@pytest.mark.parametrize("name", sorted(n for n in FILES if n.startswith("fastnet")))
def test_no_module_imports_a_command_line_module(name):
    """Commands share what they share through modules below them (fastnet.run, fastnet.provenance,
    fastnet.cli), never through one another."""
    assert not imports(name, module_level_only=False) & commands()


@pytest.mark.parametrize("name", LIBRARY)
def test_the_library_reaches_no_command_line_code(name):
    """What `import fastnet` users call (anywhere in it, lazily too) imports neither a command nor
    fastnet.cli, the commands' argument parsing and exit statuses."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports(module, module_level_only=False) - {"fastnet"})
    assert not seen & (commands() | {"fastnet.cli"}), sorted(seen & (commands() | {"fastnet.cli"}))


def test_the_import_graph_is_at_most_eight_floors_high():
    @functools.lru_cache(None)
    def floors(name):
        return 1 + max((floors(m) for m in imports(name, module_level_only=True)), default=0)

    highest = max(FILES, key=floors)
    assert floors(highest) <= MAX_FLOORS, highest
