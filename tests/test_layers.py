"""The three layers and the habits that keep them apart, read from the source.

* Imports point one way: the library (`src/adaptedflow/*.py`) imports neither
  `adaptedflow.paper` nor `adaptedflow.book`; the paper's modules do not import the book's.
  `src/adaptedflow/bench.py` is exempt: it is only the command alias
  `python -m adaptedflow.bench` for `adaptedflow.book.bench`, and the library never imports it.
* No module imports another module's private name (`from .x import _name`, `x._name`).
* `import adaptedflow` loads none of the book's or the benchmark's dependencies.
* The library keeps no `functools` cache (a cache keyed on an output map is keyed on the
  function's identity; `jax.jit` with the network as a static or pytree argument replaces it).
* The chapters stay thin: no function or class definitions in code cells, and no code cell
  longer than 15 lines except the `parameters` cell, which holds one `name = value` per line
  because papermill reads it line by line (`--param`, `--full`).

Everything here is static (`ast`), except the import checks, which run a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "adaptedflow"
#: the command alias for `adaptedflow.book.bench` (`python -m adaptedflow.bench`)
ALIAS = PACKAGE / "bench.py"
LIBRARY = sorted(p for p in PACKAGE.glob("*.py") if p != ALIAS)
PAPER = sorted((PACKAGE / "paper").glob("*.py"))
BOOK = sorted((PACKAGE / "book").glob("*.py"))
ALL_MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_CELL_LINES = 15


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _module_name(path: Path) -> str:
    """`src/adaptedflow/paper/rank.py` → `adaptedflow.paper.rank`; a package's `__init__` → the package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    """The package a relative import in `path` starts from (level 1)."""
    return _module_name(path.parent / "__init__.py")


def _resolve(path: Path, module: str | None, level: int) -> str:
    """The absolute module named by `from <level dots><module> import …` in `path`."""
    if level == 0:
        return module or ""
    base = _package_of(path).split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports(path: Path, source: str | None = None) -> list[tuple[int, str, str | None]]:
    """Every import in the module at `path`, at any depth (inside functions too).

    Returns:
        `(line, module, name)` triples: `import a.b` gives `("a.b", None)`;
        `from .x import y` gives the resolved module and `"y"`; a call
        `importlib.import_module("a.b")` or `__import__("a.b")` with a literal gives `("a.b", None)`.
    """
    tree = ast.parse(path.read_text() if source is None else source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node.module, node.level)
            out += [(node.lineno, module, alias.name) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            out.append((node.lineno, node.args[0].value, None))
    return out


def _targets(module: str, name: str | None) -> list[str]:
    """The modules an import may load: `from a import b` loads `a`, and `a.b` if b is a submodule."""
    return [module] if name is None else [module, f"{module}.{name}"]


def _under(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def layer_violations(path: Path, forbidden: tuple[str, ...], source: str | None = None) -> list[str]:
    """`file:line imports X` for each import in `path` that may load a module under one of `forbidden`."""
    return [f"{_rel(path)}:{line} imports {module if name is None else f'{module}.{name}'}"
            for line, module, name in imports(path, source)
            if any(_under(target, f) for target in _targets(module, name) for f in forbidden)]


#: a NamedTuple's public API, underscored only to keep clear of field names
NAMEDTUPLE_API = {"_fields", "_field_defaults", "_replace", "_asdict", "_make"}


def _private(name: str) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and name not in NAMEDTUPLE_API)


def private_name_violations(path: Path, source: str | None = None) -> list[str]:
    """Private names of another adaptedflow module that `path` imports or reads as an attribute."""
    source = path.read_text() if source is None else source
    own = _module_name(path)
    bad, bound = [], {}                    # local name → the adaptedflow module it is bound to
    for line, module, name in imports(path, source):
        if not _under(module, "adaptedflow"):
            continue
        if name is not None and _private(name) and module != own:
            bad.append(f"{_rel(path)}:{line} imports {module}.{name}")
        if any(_private(part) for part in module.split(".")):
            bad.append(f"{_rel(path)}:{line} imports the private module {module}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _under(alias.name, "adaptedflow"):       # `import a.b` binds a; `import a.b as c` binds a.b
                    bound[alias.asname or "adaptedflow"] = alias.name if alias.asname else "adaptedflow"
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node.module, node.level)
            if _under(module, "adaptedflow"):
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{module}.{alias.name}"
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in bound and bound[node.value.id] != own):
            bad.append(f"{_rel(path)}:{node.lineno} reads {node.value.id}.{node.attr} ({bound[node.value.id]})")
    return bad


# --------------------------------------------------------------------------------------------- the reader itself

def test_the_import_reader_sees_every_form():
    """Absolute and relative imports, `from . import x`, imports inside functions, and
    `importlib.import_module` with a literal are all seen, and resolved from the right package."""
    source = textwrap.dedent("""
        import adaptedflow.book.plots
        from adaptedflow.paper import rank
        from ..book import claims
        from . import trapping
        from .. import book

        def late():
            from ..book.report import render
            import importlib
            importlib.import_module("adaptedflow.book.statements")
    """)
    path = PACKAGE / "paper" / "example.py"
    found = layer_violations(path, ("adaptedflow.book",), source)
    lines = sorted(int(v.split(":")[1].split()[0]) for v in found)
    assert lines == [2, 4, 6, 9, 11], found
    assert layer_violations(PACKAGE / "example.py", ("adaptedflow.paper",), source)          # line 3
    lib = layer_violations(PACKAGE / "example.py", ("adaptedflow.paper", "adaptedflow.book"),
                           "def f():\n    from .paper.rank import x\n    from . import book\n")
    assert len(lib) == 2, lib
    assert _resolve(PACKAGE / "__init__.py", "book", 1) == "adaptedflow.book"
    assert _resolve(PACKAGE / "book" / "__init__.py", None, 2) == "adaptedflow"


def test_the_private_name_reader_sees_every_form():
    source = textwrap.dedent("""
        from .kernels import _direction_impl, public
        from adaptedflow.network import _ACTIVATIONS
        from . import kernels
        import adaptedflow as af
        from .numerics import __all__

        def f():
            from ..linalg import _eigh as e
            return kernels._static, af._hidden, kernels.public
    """)
    found = private_name_violations(PACKAGE / "paper" / "example.py", source)
    assert len(found) == 5, found
    assert all("public" not in v and "__all__" not in v for v in found)


# --------------------------------------------------------------------------------------------- layers

@pytest.mark.parametrize("path", LIBRARY, ids=_rel)
def test_library_imports_neither_the_paper_nor_the_book(path):
    forbidden = ("adaptedflow.paper", "adaptedflow.book", "adaptedflow.bench")
    assert not layer_violations(path, forbidden)


@pytest.mark.parametrize("path", PAPER, ids=_rel)
def test_paper_does_not_import_the_book(path):
    assert not layer_violations(path, ("adaptedflow.book", "adaptedflow.bench"))


def test_the_layers_are_where_the_tests_look():
    names = {p.name for p in LIBRARY}
    assert {"__init__.py", "flows.py", "kernels.py", "descent.py"} <= names
    assert {p.name for p in PAPER} >= {"__init__.py", "rank.py", "geometry.py", "trapping.py"}
    assert {p.name for p in BOOK} >= {"__init__.py", "pipeline.py", "claims.py", "bench.py"}
    assert not [p for p in ALL_MODULES if p.parent not in (PACKAGE, PACKAGE / "paper", PACKAGE / "book")]
    assert {m for _, m, _ in imports(ALIAS)} == {"adaptedflow.book.bench"}, "bench.py is only an alias"


@pytest.mark.parametrize("path", ALL_MODULES, ids=_rel)
def test_no_module_imports_another_modules_private_name(path):
    assert not private_name_violations(path)


# --------------------------------------------------------------------------------------------- dependencies

LIGHT = ("matplotlib", "yaml", "optax", "sklearn", "papermill", "adaptedflow.paper", "adaptedflow.book")


def _loaded_after(statement: str, modules) -> list[str]:
    code = (f"import sys; {statement}; "
            f"print(','.join(m for m in {tuple(modules)!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [m for m in proc.stdout.strip().split(",") if m]


def test_import_adaptedflow_loads_no_book_or_bench_dependency():
    assert _loaded_after("import adaptedflow", LIGHT) == []


def test_the_paper_layer_loads_no_book_dependency():
    paper = ", ".join(f"adaptedflow.paper.{p.stem}" for p in PAPER if p.stem != "__init__")
    assert _loaded_after(f"import {paper}", ("matplotlib", "yaml", "papermill", "adaptedflow.book")) == []


# --------------------------------------------------------------------------------------------- caches

def _cache_decorations(path: Path) -> list[str]:
    """Uses of `functools.lru_cache` / `functools.cache` (as decorator or call) in `path`."""
    tree = ast.parse(path.read_text())
    names = {"lru_cache", "cache"}
    local = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "functools"
             for a in n.names if a.name in names}
    found = []
    for node in ast.walk(tree):
        target = node.func if isinstance(node, ast.Call) else node
        if ((isinstance(target, ast.Attribute) and target.attr in names and isinstance(target.value, ast.Name)
             and target.value.id == "functools")
                or (isinstance(target, ast.Name) and target.id in local)):
            found.append(f"{_rel(path)}:{node.lineno}")
    return sorted(set(found))


@pytest.mark.parametrize("path", LIBRARY, ids=_rel)
def test_library_keeps_no_functools_cache(path):
    assert not _cache_decorations(path), "use jax.jit with the network as a static or pytree argument"


def test_the_cache_reader_sees_both_spellings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import functools\nfrom functools import lru_cache as lc\n\n@functools.lru_cache(maxsize=None)\n"
                 "def a(fn): ...\n\n@functools.cache\ndef b(fn): ...\n\nc = lc(8)(len)\n")
    assert len(_cache_decorations(f)) == 3


# --------------------------------------------------------------------------------------------- chapters

def _chapters():
    from adaptedflow.book.pipeline import toc_chapters

    return toc_chapters(ROOT)


CHAPTERS = _chapters()


def _code_cells(entry):
    nb = json.loads((ROOT / f"{entry}.ipynb").read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            yield i, "".join(cell["source"]), "parameters" in cell["metadata"].get("tags", [])


def cell_lines(source: str) -> int:
    """Lines of a cell's source, every line counted (comments and inner blank lines too),
    trailing blank lines not."""
    return len(source.rstrip().splitlines())


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_code_cells_define_nothing(entry):
    bad = []
    for i, source, _ in _code_cells(entry):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bad.append(f"cell {i} defines {node.name} (line {node.lineno}); move it to adaptedflow.paper")
    assert not bad, bad


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_code_cells_are_short(entry):
    bad = [f"cell {i}: {cell_lines(source)} lines" for i, source, parameters in _code_cells(entry)
           if not parameters and cell_lines(source) > MAX_CELL_LINES]
    assert not bad, f"code cells longer than {MAX_CELL_LINES} lines: {bad}"


@pytest.mark.parametrize("entry", CHAPTERS)
def test_parameters_cell_holds_only_assignments(entry):
    """The one cell exempt from the length rule holds `name = literal` lines and nothing else."""
    for i, source, parameters in _code_cells(entry):
        if parameters:
            for node in ast.parse(source).body:
                assert isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets), (
                    f"cell {i} line {node.lineno}: only `name = value` belongs in the parameters cell")
                ast.literal_eval(node.value)


def test_cell_lines_counts_every_line_but_trailing_blanks():
    assert cell_lines("a = 1\n\n# note\nb = 2\n\n\n") == 4
    assert cell_lines("") == 0
