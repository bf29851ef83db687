"""The execution cache of `python -m adaptedflow.book` (`pipeline.chapter_key`, `_build/cache`).

No chapter is executed here: `pipeline.run_chapter` is replaced by a fake that writes an
"executed" notebook and one claim record, as the real one does, and counts its calls.
"""

import json
from pathlib import Path

import pytest

from adaptedflow.book import pipeline
from adaptedflow.book.claims import outcome
from adaptedflow.book.pipeline import chapter_key, code_digest


def _notebook(source: str) -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# A chapter\n"]},
             {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
              "source": source}]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "adaptedflow": {"full_parameters": {"n": 50}}}}


def _root(tmp_path: Path, names=("a", "b")) -> Path:
    """A toy project: `_config.yml`, `_toc.yml`, chapters `names` (parameters ``seed``, ``n``),
    a package source file and a lock file."""
    root = tmp_path / "proj"
    (root / "book").mkdir(parents=True)
    (root / "src" / "adaptedflow").mkdir(parents=True)
    (root / "src" / "adaptedflow" / "core.py").write_text("X = 1\n")
    (root / "requirements-lock.txt").write_text("jax==0.4.38\n")
    (root / "_config.yml").write_text("title: Toy\n")
    chapters = "\n".join(f"  - file: book/{n}" for n in names)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/index\nchapters:\n{chapters}\n")
    (root / "book" / "index.md").write_text("# Toy\n")
    for n in names:
        (root / "book" / f"{n}.ipynb").write_text(json.dumps(_notebook("seed = 0\nn = 5\n")))
    return root


class FakeRun:
    """Stands in for `pipeline.run_chapter`: writes the executed notebook (the source with
    one output naming its parameters) and one claim record; chapters in `fail` fail."""

    def __init__(self, fail=()):
        self.calls: list[tuple[str, dict]] = []
        self.fail = set(fail)

    def __call__(self, root, stage, entry, *, full, cell_timeout, overrides=None, claims=None):
        name = pipeline.chapter_name(entry)
        params = pipeline.effective_parameters(root / f"{entry}.ipynb", full=full, overrides=overrides)
        self.calls.append((name, params))
        claims_dir = claims or root / "_build" / "claims"
        pipeline.clear_chapter(name, claims_dir)
        nb = json.loads((root / f"{entry}.ipynb").read_text())
        nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [json.dumps(params)]}]
        out = stage / f"{entry}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(nb))
        ok = name not in self.fail
        if ok:
            record = {"id": "thm-2.1", "part": name, "chapter": name, "statement": "s", "quantity": "q",
                      "equations": [], "measured": 0.1 * params["n"], "relation": "<=", "tolerance": 100.0,
                      "passed": True, "kind": "bound", "outcome": outcome("bound", True),
                      "verdict": "reproduced", "findings": [], "note": "", "data": {},
                      "mode": params["mode"] if "mode" in params else "fast", "params": params}
            (claims_dir / name).mkdir(parents=True, exist_ok=True)
            (claims_dir / name / f"thm-2.1--{name}.json").write_text(json.dumps(record, sort_keys=True))
        return {"chapter": name, "ok": ok, "seconds": 1.5, "mode": "full" if full else "fast",
                "parameters": dict(overrides or {}), "detail": None if ok else "  broke",
                "date_utc": "2026-01-01T00:00:00Z", "cached": False}

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def fake(monkeypatch):
    """The fake run in place of `pipeline.run_chapter`."""
    run = FakeRun()
    monkeypatch.setattr(pipeline, "run_chapter", run)
    return run


def _build(root: Path, *args: str, outside_pytest: bool = True) -> int:
    """`python -m adaptedflow.book --root ROOT --no-html ARGS`, in this process; by default as
    outside pytest (``PYTEST_CURRENT_TEST``, which pytest sets for each test, switches the
    cache off)."""
    with pytest.MonkeyPatch.context() as mp:
        if outside_pytest:
            mp.delenv("PYTEST_CURRENT_TEST", raising=False)
        return pipeline.main(["--root", str(root), "--no-html", *args])


def _key(root: Path, name: str = "a", *, mode: str = "fast", params: dict | None = None) -> str:
    return chapter_key(root / "book" / f"{name}.ipynb", code=code_digest(root), mode=mode,
                       parameters=params if params is not None else {"seed": 0, "n": 5})


def test_key_changes_with_each_input_and_not_otherwise(tmp_path):
    root = _root(tmp_path)
    base = _key(root)
    assert len(base) == 64 and _key(root) == base
    assert _key(root, params={"n": 5, "seed": 0}) == base                 # JSON with sorted keys
    # ignored: byte code, and files outside src/adaptedflow, book/ and the lock file
    (root / "src" / "adaptedflow" / "__pycache__").mkdir()
    (root / "src" / "adaptedflow" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0\1")
    (root / "src" / "adaptedflow" / "stale.pyc").write_bytes(b"\0\2")
    (root / "README.md").write_text("notes\n")
    (root / "book" / "b.ipynb").write_text((root / "book" / "b.ipynb").read_text() + " ")   # another chapter
    assert _key(root) == base

    changed = {}
    nb = root / "book" / "a.ipynb"
    text = nb.read_text()
    nb.write_text(text + " ")                                            # the notebook's bytes
    changed["notebook"] = _key(root)
    nb.write_text(text)
    assert _key(root) == base
    src = root / "src" / "adaptedflow" / "core.py"
    src.write_text("X = 2\n")                                            # a package source
    changed["source"] = _key(root)
    src.write_text("X = 1\n")
    (root / "src" / "adaptedflow" / "sub").mkdir()
    (root / "src" / "adaptedflow" / "sub" / "new.py").write_text("")      # a new (empty) package file
    changed["new file"] = _key(root)
    (root / "src" / "adaptedflow" / "sub" / "new.py").rename(root / "src" / "adaptedflow" / "sub" / "other.py")
    changed["renamed file"] = _key(root)
    (root / "src" / "adaptedflow" / "sub" / "other.py").unlink()
    (root / "src" / "adaptedflow" / "sub").rmdir()
    assert _key(root) == base
    lock = root / "requirements-lock.txt"
    lock.write_text("jax==0.4.39\n")                                     # the lock file
    changed["lock"] = _key(root)
    lock.write_text("jax==0.4.38\n")
    changed["parameter value"] = _key(root, params={"seed": 1, "n": 5})
    changed["extra parameter"] = _key(root, params={"seed": 0, "n": 5, "mode": "full"})
    changed["mode"] = _key(root, mode="full")
    assert _key(root) == base
    assert len(set(changed.values()) | {base}) == len(changed) + 1, changed


def test_effective_parameters_follow_mode_and_overrides(tmp_path):
    nb = _root(tmp_path) / "book" / "a.ipynb"
    assert pipeline.effective_parameters(nb, full=False) == {"seed": 0, "n": 5}
    assert pipeline.effective_parameters(nb, full=True) == {"seed": 0, "n": 50, "mode": "full"}
    assert pipeline.effective_parameters(nb, full=False, overrides={"seed": 3}) == {"seed": 3, "n": 5}


def test_second_build_reuses_every_chapter_with_identical_results(tmp_path, fake, capsys):
    root = _root(tmp_path)
    assert _build(root) == 0
    assert sorted(fake.names()) == ["a", "b"]
    first = {p: (root / "_build" / p).read_bytes()
             for p in ("claims.json", "stage/book/a.ipynb", "stage/book/b.ipynb", "stage/book/claims.md")}
    for name in ("a", "b"):
        d = root / "_build" / "cache" / "fast" / name
        row = json.loads((d / "row.json").read_text())
        assert row["key"] == _key(root, name) and row["ok"] and row["date_utc"] == "2026-01-01T00:00:00Z"
        assert (d / f"{name}.ipynb").read_bytes() == first[f"stage/book/{name}.ipynb"]
        assert [p.name for p in (d / "claims").iterdir()] == [f"thm-2.1--{name}.json"]
    capsys.readouterr()
    staged = (root / "_build" / "stage" / "book" / "a.ipynb").stat().st_mtime_ns

    assert _build(root) == 0
    assert sorted(fake.names()) == ["a", "b"]                           # nothing executed again
    # the staged notebook is not rewritten: the HTML build sees no change to the page
    assert (root / "_build" / "stage" / "book" / "a.ipynb").stat().st_mtime_ns == staged
    out = capsys.readouterr().out
    assert "2 of 2 chapters from the cache" in out and "executing 0 of 2 chapter(s)" in out
    for p, data in first.items():
        assert (root / "_build" / p).read_bytes() == data, p
    rows = json.loads((root / "_build" / "execution.json").read_text())
    assert [r["cached"] for r in rows] == [True, True]
    manifest = json.loads((root / "_build" / "stage" / "_static" / "manifest.json").read_text())
    assert [c["run"] for c in manifest["chapters"]] == ["from cache", "from cache"]
    page = (root / "_build" / "stage" / "book" / "reproducibility.md").read_text()
    assert "| a | ok | from cache | 2026-01-01 00:00:00 | 1.5 | fast |" in page
    assert f"`{_key(root, 'a')[:12]}`" in page and "2 of 2 chapters in this build" in page


def test_editing_one_chapter_reexecutes_only_that_chapter(tmp_path, fake, capsys):
    root = _root(tmp_path)
    assert _build(root) == 0
    nb = root / "book" / "b.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][0]["source"] = ["# A chapter \n"]                       # one space in a Markdown cell
    nb.write_text(json.dumps(data))
    capsys.readouterr()
    assert _build(root) == 0
    assert sorted(fake.names()[:2]) == ["a", "b"] and fake.names()[2:] == ["b"]
    out = capsys.readouterr().out
    assert "1 of 2 chapters from the cache, 1 executed" in out
    rows = {r["chapter"]: r for r in json.loads((root / "_build" / "execution.json").read_text())}
    assert rows["a"]["cached"] and not rows["b"]["cached"]
    assert json.loads((root / "_build" / "cache" / "fast" / "b" / "row.json").read_text())["key"] == _key(root, "b")


def test_a_change_to_the_package_or_the_lock_file_reexecutes_everything(tmp_path, fake):
    root = _root(tmp_path)
    assert _build(root) == 0
    (root / "src" / "adaptedflow" / "core.py").write_text("X = 3\n")
    assert _build(root) == 0
    (root / "requirements-lock.txt").write_text("jax==0.5\n")
    assert _build(root) == 0
    assert sorted(fake.names()) == ["a"] * 3 + ["b"] * 3


def test_force_reexecutes_and_refreshes_the_cache(tmp_path, fake):
    root = _root(tmp_path)
    assert _build(root) == 0
    row = root / "_build" / "cache" / "fast" / "a" / "row.json"
    row.write_text(row.read_text().replace("2026-01-01T00:00:00Z", "2000-01-01T00:00:00Z"))
    assert _build(root, "--force") == 0
    assert sorted(fake.names()) == ["a", "a", "b", "b"]
    assert json.loads(row.read_text())["date_utc"] == "2026-01-01T00:00:00Z"


def test_modes_and_parameters_have_their_own_keys(tmp_path, fake):
    root = _root(tmp_path, names=("a",))
    assert _build(root) == 0
    assert _build(root, "--full") == 0                                  # full: executed, its own slot
    assert _build(root, "--full") == 0                                  # … and then reused
    assert _build(root) == 0                                            # the fast slot is still there
    assert _build(root, "--param", "seed=3") == 0                       # another seed: executed
    assert [c[1] for c in fake.calls] == [{"seed": 0, "n": 5}, {"seed": 0, "n": 50, "mode": "full"},
                                          {"seed": 3, "n": 5}]
    assert {p.name for p in (root / "_build" / "cache").iterdir()} == {"fast", "full"}


def test_a_failed_chapter_is_not_cached(tmp_path, fake):
    root = _root(tmp_path)
    fake.fail = {"b"}
    assert _build(root) != 0
    assert (root / "_build" / "cache" / "fast" / "a").is_dir()
    assert not (root / "_build" / "cache" / "fast" / "b").exists()
    assert _build(root) != 0
    assert sorted(fake.names()) == ["a", "b", "b"]                      # b runs again, a does not
    fake.fail = set()
    assert _build(root) == 0 and (root / "_build" / "cache" / "fast" / "b").is_dir()
    fake.fail = {"a"}                                                   # a forced run that fails drops the entry
    assert _build(root, "--force") != 0
    assert not (root / "_build" / "cache" / "fast" / "a").exists()


def test_cached_claims_and_notebook_are_restored(tmp_path, fake):
    root = _root(tmp_path)
    assert _build(root) == 0
    build = root / "_build"
    claims_json = (build / "claims.json").read_bytes()
    executed = (build / "stage" / "book" / "a.ipynb").read_bytes()
    (build / "claims" / "a" / "thm-2.1--a.json").unlink()                # lost records …
    (build / "claims" / "a" / "stale--x.json").write_text("{}")          # … and a stale one
    (build / "stage" / "book" / "a.ipynb").unlink()
    assert _build(root) == 0
    assert sorted(fake.names()) == ["a", "b"]
    assert sorted(p.name for p in (build / "claims" / "a").iterdir()) == ["thm-2.1--a.json"]
    assert (build / "claims.json").read_bytes() == claims_json
    assert (build / "stage" / "book" / "a.ipynb").read_bytes() == executed


def test_a_cache_entry_with_another_key_is_not_used(tmp_path, fake):
    root = _root(tmp_path, names=("a",))
    assert _build(root) == 0
    row = root / "_build" / "cache" / "fast" / "a" / "row.json"
    data = json.loads(row.read_text())
    row.write_text(json.dumps(dict(data, key="0" * 64)))
    assert _build(root) == 0
    assert fake.names() == ["a", "a"]
    assert json.loads(row.read_text())["key"] == data["key"]


def test_no_cache_neither_reads_nor_writes(tmp_path, fake):
    root = _root(tmp_path, names=("a",))
    assert _build(root, "--no-cache") == 0
    assert not (root / "_build" / "cache").exists()
    assert _build(root) == 0                                           # fills the cache
    assert _build(root, "--no-cache") == 0                             # … which --no-cache does not read
    assert fake.names() == ["a", "a", "a"]


def test_seed_sweeps_never_use_the_cache(tmp_path, fake):
    root = _root(tmp_path, names=("a",))
    assert _build(root) == 0
    before = sorted(p.relative_to(root) for p in (root / "_build" / "cache").rglob("*"))
    assert pipeline.main(["--root", str(root), "--seeds", "0-1"]) == 0
    assert fake.names() == ["a", "a", "a"]
    assert sorted(p.relative_to(root) for p in (root / "_build" / "cache").rglob("*")) == before


def test_under_pytest_the_build_always_executes(tmp_path, monkeypatch):
    """`make test` (pytest, hence the `built_book` fixture's `python -m adaptedflow.book`)
    never reads the cache: ``PYTEST_CURRENT_TEST`` switches it off."""
    import os

    assert "PYTEST_CURRENT_TEST" in os.environ and not pipeline.cache_enabled(False)
    run = FakeRun()
    monkeypatch.setattr(pipeline, "run_chapter", run)
    root = _root(tmp_path, names=("a",))
    assert _build(root, outside_pytest=False) == 0 and _build(root, outside_pytest=False) == 0
    assert run.names() == ["a", "a"] and not (root / "_build" / "cache").exists()
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert pipeline.cache_enabled(False) and not pipeline.cache_enabled(True)
    assert _build(root) == 0 and _build(root) == 0                     # outside pytest: cached
    assert run.names() == ["a", "a", "a"]

