"""The pipeline: every chapter executed by papermill at its fast parameters, strict HTML build.

The full build runs once per session (marker `book`); a broken toy book checks that a
failing chapter is reported on the console with its cell and traceback.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adaptedflow.book.pipeline import toc_chapters

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.book


def test_every_chapter_executes_and_prints_a_line(built_book):
    for entry in toc_chapters(ROOT):
        name = Path(entry).name
        assert any(line.split()[:2] == [name, "ok"] for line in built_book.splitlines()), name
    assert "summary" in built_book and "open " in built_book


def test_every_claim_recorded_and_passed(built_book):
    records = json.loads((ROOT / "_build" / "claims.json").read_text())
    ids = {(r["id"], r["part"]) for r in records}
    for expected in [("eq-1.13", "main"), ("eq-1.31", "main"), ("thm-2.1", "rate"), ("thm-2.1", "outputs"),
                     ("thm-2.1", "rank-condition"), ("thm-2.3", "main")]:
        assert expected in ids
    assert all(r["passed"] for r in records)
    assert all(r["mode"] == "fast" for r in records)


def test_every_record_has_kind_verdict_and_findings(built_book):
    from adaptedflow.book.claims import KINDS, VERDICTS
    from adaptedflow.book.statements import VERDICT

    records = json.loads((ROOT / "_build" / "claims.json").read_text())
    for r in records:
        assert r["kind"] in KINDS and r["verdict"] in VERDICTS and isinstance(r["findings"], list), r["id"]
        assert r["verdict"] == VERDICT[r["id"]], r["id"]
        assert r["outcome"] == ("counterexample confirmed" if r["kind"] == "counterexample" else "holds")
        if r["kind"] == "frequency":
            assert {"k", "n", "ci95"} <= set(r["data"]), r["id"]
    kinds = {r["kind"] for r in records}
    assert {"identity", "counterexample", "frequency", "convergence"} <= kinds
    # the statement that fails as written is shown by a confirmed counterexample
    assert any(r["id"] == "sec-4.2" and r["kind"] == "counterexample" for r in records)


def test_no_claim_disappears_and_new_claims_are_listed(built_book):
    lines = (ROOT / "tests" / "expected_claims.txt").read_text().splitlines()
    expected = {tuple(line.split()) for line in lines if line.strip() and not line.startswith("#")}
    recorded = {(r["id"], r["part"]) for r in json.loads((ROOT / "_build" / "claims.json").read_text())}
    missing, unlisted = sorted(expected - recorded), sorted(recorded - expected)
    assert not missing, f"claims that existed are no longer recorded: {missing}"
    assert not unlisted, f"new claims: add them to tests/expected_claims.txt: {unlisted}"


def test_generated_pages_and_json(built_book):
    html = ROOT / "_build" / "html"
    claims = json.loads((html / "_static" / "claims.json").read_text())
    assert claims == json.loads((ROOT / "_build" / "claims.json").read_text())
    manifest = json.loads((html / "_static" / "manifest.json").read_text())
    for key in ("git_commit", "git_dirty", "date_utc", "platform", "cpu_count", "python", "packages", "chapters"):
        assert key in manifest
    for name in ("jax", "jaxlib", "diffrax", "numpy", "matplotlib", "papermill", "jupyter-book"):
        assert manifest["packages"][name], name
    assert {c["chapter"] for c in manifest["chapters"]} >= {Path(e).name for e in toc_chapters(ROOT)}
    # make test never reads the execution cache: every chapter ran in this build, with its key
    assert all(c["run"] == "ran now" and len(c["key"]) == 64 and c["date_utc"] for c in manifest["chapters"])
    page = (html / "book" / "claims.html").read_text()
    assert "thm-2.1" in page or "Theorem 2.1" in page
    from adaptedflow.book.statements import STATEMENTS

    checked = {r["id"] for r in claims}
    if any(sid not in checked for sid, *_ in STATEMENTS):
        assert "not yet reproduced" in page                  # honest about coverage
    assert f"{sum(sid in checked for sid, *_ in STATEMENTS)} of the paper’s {len(STATEMENTS)} statements" in page
    for verdict in ("reproduced", "fails as written", "vacuous as written", "open question answered"):
        assert verdict in page
    assert "counterexample confirmed" in page and "Clopper–Pearson" in page
    assert 'href="02_exponential_rate.html#claim-thm-2.1-rate"' in page
    assert 'id="claim-thm-2.1-rate"' in (html / "book" / "02_exponential_rate.html").read_text()
    repro = (html / "book" / "reproducibility.html").read_text()
    assert manifest["git_commit"] is None or manifest["git_commit"] in repro
    assert "ran now" in repro and manifest["chapters"][0]["key"][:12] in repro
    cite = (html / "book" / "cite.html").read_text()
    assert "Hanin" in cite and "Nonnenmacher" in cite          # the bibliography rendered
    assert (html / "mathjax" / "es5" / "tex-chtml.js").exists()


def test_html_pages_with_figures_and_math(built_book):
    html = ROOT / "_build" / "html"
    for entry in toc_chapters(ROOT):
        page = (html / f"{entry}.html").read_text()
        assert "<img" in page, f"{entry}: no figure"
        assert "math notranslate" in page, f"{entry}: no math"
        assert "injected-parameters" not in page
    assert (html / "book" / "index.html").exists()


def _toy_book(tmp_path: Path, cells_by_chapter: dict) -> Path:
    (tmp_path / "src" / "adaptedflow").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    chapters = "\n".join(f"  - file: book/{n}" for n in cells_by_chapter)
    (tmp_path / "_toc.yml").write_text(f"format: jb-book\nroot: book/index\nchapters:\n{chapters}\n")
    (tmp_path / "book" / "index.md").write_text("# Toy\n")
    for name, sources in cells_by_chapter.items():
        cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]} if i == 0 else {},
                  "execution_count": None, "outputs": [], "source": s} for i, s in enumerate(sources)]
        nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
        (tmp_path / "book" / f"{name}.ipynb").write_text(json.dumps(nb))
    return tmp_path


def test_failing_chapter_is_reported_and_others_still_run(tmp_path):
    root = _toy_book(tmp_path, {
        "bad": ["seed = 0", "x = 1\nraise ZeroDivisionError('chapter broke on purpose')"],
        "good": ["seed = 0", "print('fine')"],
    })
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html"],
                          capture_output=True, text=True)
    out = proc.stdout
    assert proc.returncode != 0
    assert "chapter bad FAILED" in out and "code cell 2" in out
    assert "raise ZeroDivisionError" in out and "chapter broke on purpose" in out
    assert any(line.split()[:2] == ["good", "ok"] for line in out.splitlines())


def test_broken_claim_fails_the_build_naming_the_claim(tmp_path):
    root = _toy_book(tmp_path, {"broken": [
        "seed = 0",
        "from adaptedflow.book import claims\ncheck = claims.checker('broken')\n"
        "check('thm-2.1', 1.0, 1e-3, statement='A deliberately broken claim.', quantity='q', kind='bound')",
    ]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ClaimFailed" in proc.stdout and "claim 'thm-2.1' (main) failed" in proc.stdout


def test_unknown_chapter_name_is_refused(tmp_path):
    root = _toy_book(tmp_path, {"only": ["seed = 0"]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--only", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown chapter" in proc.stderr and "only" in proc.stderr


def test_parameter_override_is_injected_and_hidden(tmp_path):
    root = _toy_book(tmp_path, {"echo": ["seed = 0", "assert seed == 7, seed\nprint('seed', seed)"]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html",
                           "--param", "seed=7"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    staged = json.loads((root / "_build" / "stage" / "book" / "echo.ipynb").read_text())
    injected = [c for c in staged["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]


def test_unknown_parameter_is_refused(tmp_path):
    root = _toy_book(tmp_path, {"one": ["seed = 0\nsize = 3"]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html",
                           "--param", "sede=1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no parameter(s) ['sede']" in proc.stderr and "seed, size" in proc.stderr


def test_hanging_chapter_is_stopped_by_the_cell_timeout(tmp_path):
    root = _toy_book(tmp_path, {"hangs": ["seed = 0", "import time\ntime.sleep(120)"]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html",
                           "--cell-timeout", "3"], capture_output=True, text=True, timeout=100)
    assert proc.returncode != 0
    assert "chapter hangs FAILED" in proc.stdout and "--cell-timeout = 3 s" in proc.stdout


def test_a_chapter_run_twice_gives_bit_identical_claims(tmp_path):
    """Determinism: the same chapter, same machine, same parameters → the same claim values.
    Under pytest the execution cache is off: the second build executes the chapter again."""
    root = _toy_book(tmp_path, {})
    shutil.copy(ROOT / "book" / "01_setting.ipynb", root / "book" / "01_setting.ipynb")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/01_setting\n")
    values = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "0 of 1 chapters from the cache, 1 executed (cache not used)" in proc.stdout, proc.stdout[-3000:]
        records = json.loads((root / "_build" / "claims.json").read_text())
        values.append({(r["id"], r["part"]): r["measured"] for r in records})
    assert values[0] == values[1] and len(values[0]) >= 4


def test_chapters_run_concurrently_but_timing_chapters_run_alone(tmp_path):
    """--jobs 2: the two plain chapters overlap in time; the one marked `runs_alone` (it
    reports wall-clock timings) overlaps neither."""
    log = tmp_path / "intervals.txt"
    body = ("import time\nt0 = time.time()\ntime.sleep(3)\n"
            f"open({str(log)!r}, 'a').write(f'{{name}} {{t0}} {{time.time()}}\\n')")
    root = _toy_book(tmp_path, {n: ["seed = 0", f"name = {n!r}\n" + body] for n in ("a", "timed", "c")})
    nb_path = root / "book" / "timed.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["metadata"]["adaptedflow"] = {"runs_alone": True}
    nb_path.write_text(json.dumps(nb))
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--no-html", "--jobs", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans = {n: (float(a), float(b)) for n, a, b in (line.split() for line in log.read_text().splitlines())}
    overlap = lambda p, q: min(p[1], q[1]) - max(p[0], q[0])
    assert overlap(spans["a"], spans["c"]) > 1.0, spans
    assert overlap(spans["timed"], spans["a"]) < 0 and overlap(spans["timed"], spans["c"]) < 0, spans


def test_seed_sweep_reports_the_worst_margin_and_the_failing_seeds(tmp_path):
    """--seeds runs each chapter at each seed in its own folder and prints, per claim, the
    worst margin and the seeds where it failed; a counterexample that moves with the seed
    is reported as not fixed."""
    body = ("from adaptedflow.book import claims\ncheck = claims.checker('sweep')\n"
            "check('thm-2.1', 0.1 * (seed + 1), 0.35, statement='s', quantity='q', kind='bound')\n"
            "check('sec-4.2', 2.0 + seed, 1.0, relation='>=', statement='s', quantity='q', kind='counterexample',"
            " part='moves')")
    root = _toy_book(tmp_path, {"sweep": ["seed = 0", body]})
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--seeds", "0-3",
                           "--jobs", "2"], capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout
    for seed in range(4):
        assert (root / "_build" / "seeds" / "fast" / f"seed-{seed}" / "claims" / "sweep").is_dir()
    line = next(x for x in proc.stdout.splitlines() if "thm-2.1 (main)" in x)
    assert line.split()[3:] == ["bound", "4", "1.14", "3", "3", "!"]    # 0.4/0.35 at seed 3, failed there
    assert "counterexample varies with the seed" in proc.stdout
    staged = json.loads((root / "_build" / "seeds" / "fast" / "seed-2" / "stage" / "book" / "sweep.ipynb").read_text())
    box = "".join(next(c for c in staged["cells"] if "af-result" in c["metadata"].get("tags", []))["source"])
    assert "Ran at the fast parameters: `seed = 2`." in box and "§4.2: fails as written" in box
    rows = json.loads((root / "_build" / "seeds" / "fast" / "margins.json").read_text())
    main = next(r for r in rows if r["id"] == "thm-2.1")
    assert main["failed"] == [3] and main["worst_seed"] == 3 and main["seeds"] == [0, 1, 2, 3]
    report = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--root", str(root), "--seeds-report"],
                            capture_output=True, text=True)
    assert "thm-2.1 (main)" in report.stdout and report.returncode != 0


def test_result_box_follows_the_records_and_replaces_an_old_one(tmp_path):
    from adaptedflow.book.pipeline import insert_result_box

    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1, "source": ["x = 1"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "ch.ipynb"
    path.write_text(json.dumps(nb))
    rec = {"id": "sec-4.2", "kind": "counterexample", "outcome": "counterexample confirmed", "passed": True,
           "verdict": "fails as written", "findings": ["the rule lowers C at 3/20 equilibria"]}
    for _ in range(2):                                   # a second run replaces the box, never adds one
        insert_result_box(path, [rec], mode="full", parameters={"seed": 3})
    cells = json.loads(path.read_text())["cells"]
    boxes = [c for c in cells if "af-result" in c["metadata"].get("tags", [])]
    assert len(boxes) == 1 and cells[1] is not None and "af-result" in cells[1]["metadata"]["tags"]
    text = "".join(boxes[0]["source"])
    assert "Ran at the publication parameters: `seed = 3`." in text and "§4.2: fails as written" in text
    assert "counterexample: counterexample confirmed" in text and "3/20 equilibria" in text


def test_result_box_names_the_mode_and_the_size_parameters(tmp_path):
    from adaptedflow.book.report import result_box

    rec = {"id": "thm-2.1", "kind": "identity", "outcome": "holds", "passed": True, "verdict": "reproduced",
           "findings": []}
    params = {"seed": 0, "N": 16, "hidden": [24, 24], "rtol": 1e-13, "mode": "full"}
    box = result_box([rec], mode="full", parameters=params, sizes=["N", "hidden", "seed", "seed"])
    assert "Ran at the publication parameters: `N = 16`, `hidden = [24, 24]`, `seed = 0`." in box
    box = result_box([rec], mode="fast", parameters={"seed": 0, "N": 10, "mode": "fast"})
    assert "Ran at the fast parameters: `seed = 0`, `N = 10`." in box


def test_result_box_stands_right_under_the_title(tmp_path):
    from adaptedflow.book.pipeline import insert_result_box

    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "id": "intro",
                     "source": ["# Title\n", "\n", "The statement, then more text.\n"]},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1, "id": "c1",
                     "source": ["x = 1"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "ch.ipynb"
    path.write_text(json.dumps(nb))
    rec = {"id": "thm-2.1", "kind": "identity", "outcome": "holds", "passed": True, "verdict": "reproduced",
           "findings": []}
    for _ in range(2):
        insert_result_box(path, [rec], mode="fast", parameters={"seed": 0})
    cells = json.loads(path.read_text())["cells"]
    assert "".join(cells[0]["source"]) == "# Title\n"
    assert "af-result" in cells[1]["metadata"]["tags"]
    assert "The statement" in "".join(cells[2]["source"]) and len(cells) == 4
    assert len({c["id"] for c in cells}) == 4                 # ids stay unique
