"""The project's conventions: dependencies agree, chapters are clean and parametrised, CI = make test."""

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from adaptedflow.book.pipeline import toc_chapters

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_pyproject_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in pyproject["dependencies"]}
    for extra in pyproject["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_name(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted
    assert "-e ." in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_lock_file_pins_every_dependency_exactly():
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned line in requirements-lock.txt: {line!r}"
            pins[_name(name)] = version
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in pyproject["dependencies"]}
    for extra in pyproject["optional-dependencies"].values():
        needed |= {_name(r) for r in extra}
    assert needed <= set(pins), needed - set(pins)
    assert pins["jupyter-book"].startswith("1.")


#: what `pip install adaptedflow` brings: the library and nothing of the book or the benchmark
LIBRARY_DEPENDENCIES = {"jax", "jaxlib", "numpy", "scipy", "diffrax", "lineax"}


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_library_dependencies_exclude_the_book_and_the_bench():
    project = _project()
    assert {_name(r) for r in project["dependencies"]} == LIBRARY_DEPENDENCIES
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert {"matplotlib", "pyyaml", "scikit-learn", "optax", "papermill", "jupyter-book"} <= extras["book"]
    assert {"optax", "optimistix"} <= extras["bench"]
    assert {"pytest", "hypothesis", "ruff"} <= extras["test"]


def test_ruff_is_pinned_alike_in_the_test_extra_and_the_lock():
    pinned = [r for r in _project()["optional-dependencies"]["test"] if _name(r) == "ruff"]
    assert pinned and pinned[0].replace(" ", "").startswith("ruff=="), pinned
    assert pinned[0].replace(" ", "") in (ROOT / "requirements-lock.txt").read_text().splitlines()


def _third_party_imports(path: Path, *, module_level: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("adaptedflow", "__future__")}


def _installed_by(distributions: set[str]) -> set[str]:
    """`distributions` and what they require unconditionally, one level down (names normalised)."""
    out = set(distributions)
    for dist in distributions:
        for req in importlib.metadata.requires(dist) or []:
            if "extra ==" not in req:
                out.add(_name(req))
    return out


def test_library_imports_at_module_level_only_what_its_dependencies_install():
    """Every third-party package a library module imports when it is imported comes with
    `pip install adaptedflow`: a declared dependency, or one that a declared dependency requires
    (optimistix, whose Newton solver the integrator hands to diffrax, comes with diffrax).
    Lazily imported extras (optax for Adam, scikit-learn for the wine data) are not needed."""
    dists = importlib.metadata.packages_distributions()
    available = _installed_by(LIBRARY_DEPENDENCIES)
    library = [p for p in (ROOT / "src" / "adaptedflow").glob("*.py") if p.name != "bench.py"]
    missing = {}
    for path in library:
        for name in _third_party_imports(path, module_level=True):
            provided = {_name(d) for d in dists.get(name, [name])}
            if not provided & available:
                missing[f"{path.name}: {name}"] = sorted(provided)
    assert not missing, missing


def test_make_test_runs_lint_first():
    text = (ROOT / "Makefile").read_text()
    test_rule = re.search(r"^test:(.*)$", text, re.M)
    assert test_rule and "lint" in test_rule.group(1).split()
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", text, re.M)
    assert lint and "-m ruff check src tests" in lint.group(1)
    assert "make lint" in text                                       # listed by `make help`


def test_ruff_configuration_selects_the_agreed_rules():
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["line-length"] == 120
    assert {"F", "E", "W", "I", "B"} <= set(ruff["lint"]["select"])


CHAPTERS = toc_chapters(ROOT)


def test_toc_lists_the_chapters():
    assert [Path(c).name for c in CHAPTERS][:3] == ["01_setting", "02_exponential_rate", "03_stopping_time"]


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_is_stored_clean_with_a_parameters_cell(entry):
    nb = json.loads((ROOT / f"{entry}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "stored with outputs"
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    src = "".join(tagged[0]["source"])
    assert re.search(r"^seed\s*=", src, re.M) and re.search(r'^mode\s*=\s*"fast"', src, re.M)
    full = nb["metadata"].get("adaptedflow", {}).get("full_parameters", {})
    for key in full:
        assert re.search(rf"^{key}\s*=", src, re.M), f"full parameter {key!r} is not a parameter"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("entry", CHAPTERS)
def test_every_cell_has_a_unique_id(entry):
    """nbformat 4.5 requires cell ids (nbformat warns now and will refuse later); edits keep them."""
    nb = json.loads((ROOT / f"{entry}.ipynb").read_text())
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    ids = [c.get("id") for c in nb["cells"]]
    missing = [i for i, cid in enumerate(ids) if not cid]
    assert not missing, f"cells without an id: {missing}"
    assert len(set(ids)) == len(ids), "duplicate cell ids"


def test_ci_runs_make_test():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and "make test" in text


@pytest.mark.parametrize("entry", CHAPTERS)
def test_papermill_parses_every_parameter(entry):
    """papermill must see every `name = value` of the parameters cell (a stray `=` in a
    comment makes it skip the line, and then `--param`/`--full` could not set it)."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    from adaptedflow.book.pipeline import parameter_names

    nb = load_notebook_node(str(ROOT / f"{entry}.ipynb"))
    inferred = [p.name for p in _infer_parameters(nb)]
    assert inferred == parameter_names(ROOT / f"{entry}.ipynb")
