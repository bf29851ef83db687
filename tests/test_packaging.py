"""The project's conventions: dependencies agree, chapters are clean and parametrised, CI = make test."""

import json
import re
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
