r"""Build the book: execute every chapter with papermill, then Jupyter Book (strict).

Usage (from the project root; `make book` calls it)::

    python -m adaptedflow.book                 # fast parameters, every chapter, HTML
    python -m adaptedflow.book --full          # publication parameters
    python -m adaptedflow.book --only 02_exponential_rate
    python -m adaptedflow.book --no-html       # execute only
    python -m adaptedflow.book --param seed=3  # override a parameter of every chapter
    python -m adaptedflow.book --seeds 0-19    # every chapter at seeds 0..19, margin table
    python -m adaptedflow.book --seeds-report  # the margin table of the stored seed runs
    python -m adaptedflow.book --force         # re-execute every chapter, even if cached
    python -m adaptedflow.book --no-cache      # neither read nor write the execution cache

Steps:

1. Stage: copy `_config.yml`, `_toc.yml` and the non-notebook files of `book/` to
   `_build/stage/`.
2. Execute each chapter of `_toc.yml` with ``papermill SRC STAGED -k python3 --cwd ...``
   (fast: the notebook's own `parameters` cell; `--full`: the parameters stored in the
   notebook's metadata ``adaptedflow.full_parameters``), printing one line per chapter.
   A failing chapter prints its failing cell and traceback; the others still run.
   **Execution cache**: a chapter is executed only when its key (`chapter_key`: the
   notebook's bytes, every file of `src/adaptedflow`, `requirements-lock.txt`, the
   effective parameters and the mode) differs from the key of its last successful run
   stored in `_build/cache/<mode>/<chapter>/`; otherwise that run's executed notebook and
   claim records are restored (`--force` re-executes and refreshes the cache, `--no-cache`
   neither reads nor writes it; `--seeds` never uses it, nor does any run under pytest).
3. Gather every chapter's claim records into `_build/claims.json`, and generate the
   Claims and Reproducibility pages and `_static/claims.json`, `_static/manifest.json`;
   fill the staged index's results at a glance and headline figure (chapter 02's
   ``fig-02-rate``), and the cite page's BibTeX entry (url, version, commit).
   Each chapter's executed copy gets its "Result" box right under its title.
4. ``jupyter-book build _build/stage --path-output . -n -W --keep-going`` (execution off).
   Sphinx rebuilds only the pages whose staged source changed: a notebook restored from
   the cache keeps its staged file (bytes and date) when identical, so a build with nothing
   to execute rewrites only the generated pages (measured: 9 s in all, 11 chapters cached).

The command exits non-zero if any chapter or the HTML build failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from .claims import clear_chapter, collect, project_root
from .report import claims_page, manifest, reproducibility_page, result_box, results_at_a_glance

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def toc_chapters(root: Path) -> list[str]:
    """Chapter paths (relative, without suffix) in `_toc.yml` order that are notebooks."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    entries: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    entries.append(node[key])
            for key in ("chapters", "sections", "parts"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [e for e in entries if (root / f"{e}.ipynb").exists()]


def chapter_name(entry: str) -> str:
    """`book/02_exponential_rate` → `02_exponential_rate`."""
    return Path(entry).name


def parameter_names(notebook: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged `parameters` (one per line: `name = value`)."""
    nb = json.loads(notebook.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return re.findall(r"^([A-Za-z_]\w*)\s*=", "".join(cell.get("source", "")), flags=re.M)
    return []


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", name.strip()):
        raise ValueError(f"--param takes NAME=VALUE (e.g. seed=3); got {text!r}")
    return name.strip(), yaml.safe_load(value)


def full_parameters(notebook: Path) -> dict:
    """The publication parameters stored in the notebook's metadata (may be empty)."""
    nb = json.loads(notebook.read_text())
    return dict(nb.get("metadata", {}).get("adaptedflow", {}).get("full_parameters", {}))


def runs_alone(notebook: Path) -> bool:
    """Whether the chapter reports wall-clock timings and so runs with no other chapter
    beside it (notebook metadata ``adaptedflow.runs_alone``)."""
    nb = json.loads(notebook.read_text())
    return bool(nb.get("metadata", {}).get("adaptedflow", {}).get("runs_alone", False))


def default_jobs() -> int:
    """Chapters executed at once by default: one per core, at most 4.  Chapters are
    mostly single-threaded (tracing and compiling); on 2 cores two at once built the fast
    book in 164 s against 280 s of chapter time."""
    return max(1, min(4, os.cpu_count() or 1))


def _stage(root: Path, stage: Path, *, mathjax: bool = True) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    for extra in ("references.bib", "LICENSE", "LICENSE-text", "CITATION.cff"):
        if (root / extra).exists():
            shutil.copy2(root / extra, stage / extra)
    (stage / "_static").mkdir(exist_ok=True)
    if mathjax:
        _stage_mathjax(stage / "_extra")
    src = root / "book"
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or path.suffix == ".ipynb":
            continue
        dest = stage / "book" / rel
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def _stage_mathjax(extra: Path) -> None:
    """Copy MathJax 3 (es5 build, fonts included) next to the HTML, so math renders offline.

    It comes from the PyPI package `django-static-mathjax` (static files only, no
    dependencies), is served through `html_extra_path` and loaded via `mathjax_path`.
    """
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    src = Path(spec.origin).parent / "static" / "mathjax" if spec and spec.origin else None
    if src is None or not (src / "es5" / "tex-chtml.js").exists():
        raise SystemExit("MathJax 3 is missing: install `django-static-mathjax` (it is in requirements-lock.txt).")
    dest = extra / "mathjax"
    if not (dest / "es5" / "tex-chtml.js").exists():
        shutil.copytree(src / "es5", dest / "es5", dirs_exist_ok=True)
        shutil.copy2(src / "LICENSE", dest / "LICENSE")


def _write_reports(root: Path, stage: Path, entries: list[str], rows: list[dict]) -> list[dict]:
    """Gather claims and execution rows; write claims.json, execution.json, manifest.json and
    the generated Claims and Reproducibility pages into the stage."""
    build = root / "_build"
    records = collect(build / "claims")
    previous = {}
    if (build / "execution.json").exists():
        previous = {r["chapter"]: r for r in json.loads((build / "execution.json").read_text())}
    ran = {r["chapter"]: {k: v for k, v in r.items() if k != "detail"} for r in rows}
    all_rows = [ran.get(chapter_name(e)) or previous.get(chapter_name(e)) for e in entries]
    all_rows = [r for r in all_rows if r]
    (build / "claims.json").write_text(json.dumps(records, indent=1) + "\n")
    (build / "execution.json").write_text(json.dumps(all_rows, indent=1) + "\n")
    data = manifest(root, all_rows)
    (stage / "_static" / "claims.json").write_text(json.dumps(records, indent=1) + "\n")
    (stage / "_static" / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
    pages = {chapter_name(e): Path(e).name for e in entries}
    (stage / "book" / "claims.md").write_text(claims_page(records, chapter_pages=pages))
    index = stage / "book" / "index.md"
    if index.exists():
        text = index.read_text().replace(RESULTS_MARKER, results_at_a_glance(records, chapter_pages=pages))
        index.write_text(text.replace(HEADLINE_MARKER, headline_figure(stage)))
    cite = stage / "book" / "cite.md"
    if cite.exists():
        cite.write_text(cite.read_text().replace(BIBTEX_MARKER, book_bibtex(root, data["git_commit"])))
    (stage / "book" / "reproducibility.md").write_text(reproducibility_page(data))
    return records


#: Markers in the staged pages that the build replaces with what it generated.
RESULTS_MARKER = "<!-- results-at-a-glance -->"
HEADLINE_MARKER = "<!-- headline-figure -->"
BIBTEX_MARKER = "<!-- book-bibtex -->"
#: The index's headline figure: the figure glued under `key` by `chapter`.
HEADLINE = {"chapter": "book/02_exponential_rate", "key": "fig-02-rate", "name": "fig-headline",
            "file": "_generated/fig-headline.png"}


def glued_png(executed: Path, key: str) -> bytes | None:
    """The PNG an executed notebook glued under `key` (``plots.show(fig, key)``), or None."""
    import base64

    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            scrap = out.get("metadata", {}).get("scrapbook", {})
            if scrap.get("name") != key:
                continue
            data = out.get("data", {})
            png = data.get(scrap.get("mime_prefix", "") + "image/png") or data.get("image/png")
            if png:
                return base64.b64decode("".join(png) if isinstance(png, list) else png)
    return None


def headline_figure(stage: Path) -> str:
    """The index's headline figure (a MyST figure, numbered, with alt text and the label
    ``fig-headline``): chapter 02's rate figure, copied out of its executed notebook.
    (myst-nb's ``{glue:figure}`` cannot paste from another page.)  Without an executed
    chapter 02, a sentence pointing to it."""
    png = glued_png(stage / f"{HEADLINE['chapter']}.ipynb", HEADLINE["key"])
    page = Path(HEADLINE["chapter"]).name
    if png is None:
        return f"*The headline figure appears here once [chapter 2]({page}.ipynb) has been executed.*\n"
    dest = stage / "book" / HEADLINE["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(png)
    return (f"```{{figure}} {HEADLINE['file']}\n:name: {HEADLINE['name']}\n"
            ":alt: Log-scale plot of the normalised cost C(s)/C(0) against the flow time s: every adapted-flow "
            "orbit lies on the single line exp(-2s/N), beside the standard-flow orbits from the same starts, "
            "which follow curves of their own.\n\n"
            "Every orbit of the adapted flow (blue), from random initialisations and normalised by its initial "
            "cost, lies on the one line $e^{-2s/N}$ (dashed) of Theorem 2.1; the standard gradient flow "
            f"(vermilion) from the same starts has no such rate. From [chapter 2]({page}.ipynb), "
            f"{{numref}}`{HEADLINE['key']}`.\n```\n")


def book_bibtex(root: Path, commit: str | None) -> str:
    """The book's BibTeX entry, with the repository URL (``repository.url`` of
    `_config.yml`), the installed package version and the commit this build ran from."""
    import importlib.metadata

    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    url = (config.get("repository") or {}).get("url") or ""
    try:
        version = importlib.metadata.version("adaptedflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    year = time.strftime("%Y", time.gmtime())
    lines = ["@software{adaptedflow,",
             "  author  = {{The adaptedflow authors}},",
             "  title   = {adaptedflow: an executable, checked companion to",
             "             ``Global L² minimization at uniform exponential rate via geometrically",
             "             adapted gradient descent in Deep Learning''},",
             f"  version = {{{version}}},",
             f"  year    = {{{year}}},",
             f"  url     = {{{url}}}," if url else None,
             f"  commit  = {{{commit}}}," if commit else None,
             "  license = {MIT},",
             "  note    = {Companion to arXiv:2311.15487" + (f"; built from commit {commit[:12]}" if commit else "")
             + "}",
             "}"]
    return "```bibtex\n" + "\n".join(line for line in lines if line is not None) + "\n```\n"


def _first_error(executed: Path) -> str | None:
    """The failing cell of an executed notebook: index, source and traceback."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return None
    code_index = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        code_index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                src = "".join(cell.get("source", ""))
                tb = _ANSI.sub("", "\n".join(out.get("traceback", [])))
                head = "\n".join("    | " + line for line in src.splitlines()[:12])
                return (f"  failing cell: code cell {code_index} (execution count "
                        f"{cell.get('execution_count')}):\n{head}\n  traceback:\n{tb}\n"
                        f"  {out.get('ename')}: {out.get('evalue')}")
    return None


def _hide_injected(executed: Path) -> None:
    """Tag papermill's injected-parameters cell `remove-cell` so the HTML hides it."""
    nb = json.loads(executed.read_text())
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _notebook_defaults(notebook: Path) -> dict:
    """The values of the parameters cell (literals only), for the Result box."""
    import ast

    nb = json.loads(notebook.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse("".join(cell.get("source", ""))).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            return out
    return {}


def _split_title(cells: list[dict]) -> None:
    """Split the first Markdown cell after its title line (``# …``) when more text follows,
    so that the Result box can stand right under the title."""
    at = next((i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"), None)
    if at is None:
        return
    cell = cells[at]
    src = cell.get("source", "")
    lines = ("".join(src) if isinstance(src, list) else src).splitlines(keepends=True)
    title = next((k for k, line in enumerate(lines) if line.startswith("# ")), None)
    if title is None or not "".join(lines[title + 1:]).strip():
        return
    rest = dict(cell, metadata=dict(cell.get("metadata", {})), source=lines[title + 1:])
    if "id" in cell:
        rest["id"] = f"{cell['id']}-body"[:64]
    cell["source"] = lines[:title + 1]
    cells.insert(at + 1, rest)


def insert_result_box(executed: Path, records: list[dict], *, mode: str, parameters: dict,
                      sizes: list[str] | None = None) -> None:
    """Put the chapter's "Result" box, generated from its records, right under its title
    (replacing the box of an earlier run); the title cell is split from the text after it.
    `sizes`: the parameters the box names (default: all but ``mode``)."""
    nb = json.loads(executed.read_text())
    cells = [c for c in nb.get("cells", []) if "af-result" not in c.get("metadata", {}).get("tags", [])]
    box = result_box(records, mode=mode, parameters=parameters, sizes=sizes)
    if box:
        _split_title(cells)
        at = next((i + 1 for i, c in enumerate(cells) if c.get("cell_type") == "markdown"), 0)
        cell = {"cell_type": "markdown", "metadata": {"tags": ["af-result"]}, "source": box.splitlines(keepends=True)}
        if any("id" in c for c in cells):
            cell["id"] = "af-result-box"
        cells.insert(at, cell)
    nb["cells"] = cells
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def run_chapter(root: Path, stage: Path, entry: str, *, full: bool, cell_timeout: int,
                overrides: dict | None = None, claims: Path | None = None) -> dict:
    """Execute one chapter with papermill into the stage; return its summary row.

    Its claim records go to `claims` (default `_build/claims`)."""
    name = chapter_name(entry)
    src = root / f"{entry}.ipynb"
    out = stage / f"{entry}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    claims = claims or root / "_build" / "claims"
    clear_chapter(name, claims)
    params = dict(full_parameters(src), mode="full") if full else {}
    params.update(overrides or {})
    cmd = [sys.executable, "-m", "papermill", str(src), str(out), "-k", "python3",
           "--cwd", str(out.parent), "--no-progress-bar", "--execution-timeout", str(cell_timeout)]
    if params:
        pfile = stage / f".{name}.params.yml"
        pfile.write_text(yaml.safe_dump(params))
        cmd += ["-f", str(pfile)]
    env = dict(os.environ, ADAPTEDFLOW_CLAIMS_DIR=str(claims), ADAPTEDFLOW_CHAPTER=name,
               MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONHASHSEED="0")
    # One BLAS thread: on a loaded 2-core machine a multi-threaded OpenBLAS made small
    # Cholesky factorisations 30-500x slower (measured while writing chapter 10).
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    # XLA executables persist across chapters and builds (JAX keys them on the program,
    # the jax/jaxlib versions and the flags, so a stale entry is never reused): a rebuild
    # skips compilation — chapter 02 took 20.8 s cold and 14.4 s warm.  Tracing still runs.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "_build" / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    date_utc = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    ok = proc.returncode == 0
    detail = None
    if out.exists():
        _hide_injected(out)
        insert_result_box(out, [r for r in collect(claims) if r["chapter"] == name],
                           mode="full" if full else "fast", parameters={**_notebook_defaults(src), **params},
                           sizes=[*full_parameters(src), *(overrides or {}), "seed"])
    if not ok:
        detail = _first_error(out) if out.exists() else None
        if "timed out" in proc.stderr:
            detail = (f"  TIMEOUT: a cell ran longer than --cell-timeout = {cell_timeout} s and was interrupted\n"
                      + (detail or ""))
        if detail is None:
            tail = _ANSI.sub("", proc.stderr).strip().splitlines()[-25:]
            detail = "  papermill output (last lines):\n" + "\n".join("    " + line for line in tail)
    return {"chapter": name, "ok": ok, "seconds": seconds, "mode": "full" if full else "fast",
            "parameters": params, "detail": detail, "date_utc": date_utc, "cached": False}


# --------------------------------------------------------------------------- execution cache


def _digest_update(h, label: str, data: bytes) -> None:
    """Feed one labelled, length-prefixed field to a hash (no two inputs can collide by concatenation)."""
    h.update(label.encode() + b"\0" + len(data).to_bytes(8, "little") + data)


def code_digest(root: Path) -> str:
    """sha256 over every file of `root/src/adaptedflow` (sorted relative paths and bytes;
    `__pycache__` and ``*.pyc`` excluded) and `root/requirements-lock.txt`: what every
    chapter's key shares."""
    h = hashlib.sha256()
    src = root / "src" / "adaptedflow"
    files = sorted((p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(src).parts
                    and p.suffix != ".pyc"), key=lambda p: p.relative_to(src).as_posix()) if src.is_dir() else []
    for path in files:
        _digest_update(h, "src:" + path.relative_to(src).as_posix(), path.read_bytes())
    lock = root / "requirements-lock.txt"
    _digest_update(h, "lock", lock.read_bytes() if lock.exists() else b"")
    return h.hexdigest()


def effective_parameters(notebook: Path, *, full: bool, overrides: dict | None = None) -> dict:
    """The parameters a chapter runs at: its parameters cell, then (`full`) its publication
    parameters and ``mode="full"``, then `overrides`."""
    params = dict(full_parameters(notebook), mode="full") if full else {}
    params.update(overrides or {})
    return {**_notebook_defaults(notebook), **params}


def chapter_key(notebook: Path, *, code: str, mode: str, parameters: dict) -> str:
    """The execution-cache key of a chapter (64 hex digits): sha256 over the notebook's
    bytes, `code` (`code_digest`: the package sources and the lock file), the effective
    `parameters` (JSON, sorted keys) and the `mode` ("fast" or "full")."""
    h = hashlib.sha256()
    _digest_update(h, "notebook", notebook.read_bytes())
    _digest_update(h, "code", code.encode())
    _digest_update(h, "parameters", json.dumps(parameters, sort_keys=True, default=str).encode())
    _digest_update(h, "mode", mode.encode())
    return h.hexdigest()


def cache_dir(root: Path, mode: str, name: str) -> Path:
    """Where the last successful run of chapter `name` at `mode` is kept:
    `_build/cache/<mode>/<name>/` holding ``<name>.ipynb`` (the executed notebook, Result
    box included), ``claims/*.json`` (its claim records) and ``row.json`` (its execution
    row with ``key``, ``date_utc`` and ``seconds``)."""
    return root / "_build" / "cache" / mode / name


def store_in_cache(root: Path, stage: Path, entry: str, row: dict, *, claims: Path | None = None) -> None:
    """Keep a chapter's run for reuse: only a successful one; a failed run removes the
    entry, so that the next build executes the chapter again."""
    name = chapter_name(entry)
    dest = cache_dir(root, row["mode"], name)
    if not row["ok"] or not (stage / f"{entry}.ipynb").exists():
        shutil.rmtree(dest, ignore_errors=True)
        return
    claims = claims or root / "_build" / "claims"
    tmp = dest.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "claims").mkdir(parents=True)
    shutil.copy2(stage / f"{entry}.ipynb", tmp / f"{name}.ipynb")
    for path in sorted((claims / name).glob("*.json")):
        shutil.copy2(path, tmp / "claims" / path.name)
    keep = {k: row[k] for k in ("chapter", "ok", "seconds", "mode", "parameters", "key", "date_utc")}
    (tmp / "row.json").write_text(json.dumps(keep, indent=1, sort_keys=True, default=str) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def restore_from_cache(root: Path, stage: Path, entry: str, *, key: str, mode: str,
                       claims: Path | None = None) -> dict | None:
    """If the cache holds a successful run of `entry` at `mode` under `key`, put its
    executed notebook into the stage (left untouched when identical, so the HTML build
    sees no change) and its claim records into `claims` (replacing the chapter's), and
    return its execution row (``cached`` true); else None."""
    name = chapter_name(entry)
    d = cache_dir(root, mode, name)
    try:
        row = json.loads((d / "row.json").read_text())
    except (OSError, ValueError):
        return None
    executed = d / f"{name}.ipynb"
    if row.get("key") != key or not row.get("ok") or not executed.exists() or not (d / "claims").is_dir():
        return None
    out = stage / f"{entry}.ipynb"
    data = executed.read_bytes()
    if not out.exists() or out.read_bytes() != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    claims = claims or root / "_build" / "claims"
    clear_chapter(name, claims)
    (claims / name).mkdir(parents=True, exist_ok=True)
    for path in sorted((d / "claims").glob("*.json")):
        shutil.copy2(path, claims / name / path.name)
    return {**row, "cached": True, "detail": None}


def cache_enabled(no_cache: bool) -> bool:
    """Whether the build uses the execution cache: not with `--no-cache`, and never under
    pytest (``PYTEST_CURRENT_TEST`` is set): the tests always execute every chapter."""
    return not no_cache and "PYTEST_CURRENT_TEST" not in os.environ


def parse_seeds(text: str) -> list[int]:
    """``"0-19"`` → 0..19; ``"0,3,7-9"`` → [0, 3, 7, 8, 9]."""
    seeds: list[int] = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        if not a.isdigit() or (sep and not b.isdigit()):
            raise ValueError(f"--seeds takes a list of seeds and ranges such as 0-19 or 0,3,7-9; got {text!r}")
        seeds += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    if not seeds:
        raise ValueError(f"--seeds names no seed: {text!r}")
    return sorted(set(seeds))


def seeds_dir(root: Path, full: bool) -> Path:
    """Where seed sweeps keep their runs: `_build/seeds/<fast|full>/seed-<s>/{stage,claims}`."""
    return root / "_build" / "seeds" / ("full" if full else "fast")


def run_seeds(root: Path, entries: list[str], seeds: list[int], *, full: bool, jobs: int, cell_timeout: int,
              overrides: dict) -> list[dict]:
    """Execute every chapter of `entries` at every seed, each (seed, chapter) in its own
    stage and claims folder; return the execution rows (with their seed)."""
    base = seeds_dir(root, full)
    tasks = []
    for seed in seeds:
        stage = base / f"seed-{seed}" / "stage"
        _stage(root, stage, mathjax=False)
        tasks += [(seed, e) for e in entries]

    def one(task):
        seed, entry = task
        d = base / f"seed-{seed}"
        row = run_chapter(root, d / "stage", entry, full=full, cell_timeout=cell_timeout,
                          overrides={**overrides, "seed": seed}, claims=d / "claims")
        row["seed"] = seed
        print(f"  seed {seed:<4} {row['chapter']:<28} {'ok' if row['ok'] else 'FAILED':<7} {row['seconds']:7.1f} s",
              flush=True)
        if row["detail"]:
            print(f"seed {seed}, chapter {row['chapter']} FAILED\n{row['detail']}\n", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, tasks))


def seed_table(root: Path, full: bool, chapters: list[str] | None = None) -> tuple[list[dict], str]:
    """Per claim, the worst margin over the stored seed runs, and the seeds where it failed.

    Returns (rows, text): rows as dicts (chapter, id, part, kind, seeds, worst margin, the
    seed of the worst, its measured value and tolerance, failed seeds, the spread
    max − min of the measured value), and a plain-text table.  A counterexample whose
    measured value is not the same at every seed is reported as a failure: it is a
    fixed instance, bit-identical for every reader.
    A claim missing at a seed where its chapter ran counts as failed there (the chapter
    stopped before it)."""
    from .claims import margin

    base = seeds_dir(root, full)
    rows: dict[tuple, dict] = {}
    ran: dict[str, set[int]] = {}
    for d in sorted(base.glob("seed-*")):
        seed = int(d.name.split("-", 1)[1])
        for rec in collect(d / "claims"):
            if chapters and rec["chapter"] not in chapters:
                continue
            ran.setdefault(rec["chapter"], set()).add(seed)
            key = (rec["chapter"], rec["id"], rec["part"])
            row = rows.setdefault(key, {"chapter": key[0], "id": key[1], "part": key[2], "kind": rec.get("kind", "?"),
                                        "seeds": [], "worst": -math.inf, "failed": [], "values": []})
            m = margin(rec)
            row["seeds"].append(seed)
            row["values"].append(rec["measured"])
            if not rec["passed"]:
                row["failed"].append(seed)
            if m > row["worst"]:
                row.update(worst=m, worst_seed=seed, measured=rec["measured"], tolerance=rec["tolerance"],
                           relation=rec["relation"])
    for row in rows.values():
        missing = sorted(ran.get(row["chapter"], set()) - set(row["seeds"]))
        row["missing"] = missing
        vals = [v for v in row["values"] if isinstance(v, (int, float))]
        row["spread"] = (max(vals) - min(vals)) if vals else math.nan
    out = sorted(rows.values(), key=lambda r: (r["chapter"], r["id"], r["part"]))
    head = f"{'chapter':<22} {'claim (part)':<52} {'kind':<14} {'seeds':>5} {'worst margin':>12} {'at seed':>7}  failed"
    lines = [head, "-" * len(head)]
    for r in out:
        bad = r["failed"] + [f"{s} (missing)" for s in r["missing"]]
        if r["kind"] == "counterexample" and r["spread"] != 0:
            bad.append(f"counterexample varies with the seed by {r['spread']:.3g}")
        flag = " !" if r["worst"] > 0.5 else ""
        lines.append(f"{r['chapter'][:22]:<22} {(r['id'] + ' (' + r['part'] + ')')[:52]:<52} {r['kind']:<14} "
                     f"{len(r['seeds']):>5} {r['worst']:>12.3g} {r.get('worst_seed', ''):>7}  "
                     f"{', '.join(map(str, bad)) or '-'}{flag}")
    n_fail = sum(1 for r in out if r["failed"] or r["missing"] or (r["kind"] == "counterexample" and r["spread"] != 0))
    lines.append(f"{len(out)} claims; {n_fail} failed at some seed; '!' marks a worst margin above 0.5")
    return out, "\n".join(lines)


def build_html(root: Path, stage: Path) -> int:
    """Strict Jupyter Book build of the staged book into `_build/html`."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(stage),
           "--path-output", ".", "-n", "-W", "--keep-going"]
    print("building HTML: jupyter-book build _build/stage --path-output . -n -W --keep-going", flush=True)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (root / "_build" / "jupyter-book.log").write_text(log)
    if proc.returncode != 0:
        warn = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line or "Error" in line]
        shown = warn or log.splitlines()[-30:]
        print("HTML build FAILED; warnings and errors:\n" + "\n".join("  " + w for w in shown))
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptedflow.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run the publication parameters")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this chapter (repeatable)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of every selected chapter, e.g. --param seed=3 (repeatable)")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters, skip the HTML build")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help=f"chapters executed at once (default: one per core, at most 4; here {default_jobs()}); "
                             "chapters that report timings run alone after the others")
    parser.add_argument("--cell-timeout", type=int, default=900, help="seconds a cell may run (default 900)")
    parser.add_argument("--seeds", metavar="LIST",
                        help="run the selected chapters at each of these seeds (e.g. 0-19 or 0,3,7-9), "
                             "no HTML, and print per claim the worst margin over the seeds")
    parser.add_argument("--seeds-report", action="store_true",
                        help="print the margin table of the seed runs stored under _build/seeds and exit")
    parser.add_argument("--root", type=Path, default=None, help="project root (default: found from cwd)")
    parser.add_argument("--force", action="store_true",
                        help="execute every selected chapter even if the cache holds a run with the same key "
                             "(the cache is refreshed)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the execution cache _build/cache (make test; pytest always)")
    args = parser.parse_args(argv)

    root = (args.root or project_root()).resolve()
    if not (root / "_toc.yml").exists():
        parser.error(f"no _toc.yml in {root}; run from the project root or pass --root.")
    entries = toc_chapters(root)
    names = [chapter_name(e) for e in entries]
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown chapter(s) {unknown}; chapters are: {', '.join(names)}")
        selected = [e for e in entries if chapter_name(e) in args.only]
    else:
        selected = entries
    try:
        overrides = dict(_parse_param(p) for p in args.param)
    except ValueError as exc:
        parser.error(str(exc))
    for e in selected:
        known = parameter_names(root / f"{e}.ipynb")
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            parser.error(f"chapter {chapter_name(e)} has no parameter(s) {unknown}; its parameters are: "
                         f"{', '.join(known)}")
    if args.jobs < 1 or args.cell_timeout < 1:
        parser.error("--jobs and --cell-timeout must be positive integers")

    if args.seeds_report or args.seeds:
        if "seed" in overrides:
            parser.error("--seeds sets the seed; do not also pass --param seed=...")
        mode = "full" if args.full else "fast"
        if args.seeds:
            try:
                seeds = parse_seeds(args.seeds)
            except ValueError as exc:
                parser.error(str(exc))
            print(f"executing {len(selected)} chapter(s) at {mode} parameters at seeds {args.seeds}", flush=True)
            t0 = time.perf_counter()
            rows = run_seeds(root, selected, seeds, full=args.full, jobs=args.jobs, cell_timeout=args.cell_timeout,
                             overrides=overrides)
            times: dict[str, list[float]] = {}
            for r in rows:
                times.setdefault(r["chapter"], []).append(r["seconds"])
            print(f"\nwall time {time.perf_counter() - t0:.0f} s; per chapter, median seconds over seeds:")
            for name, ts in times.items():
                print(f"  {name:<28} {sorted(ts)[len(ts) // 2]:7.1f}")
        chosen = [chapter_name(e) for e in selected] if args.only else None
        table_rows, text = seed_table(root, args.full, chosen)
        print(f"\nclaims over the stored {mode} seed runs (margin: measured/tolerance, or tolerance/measured "
              f"for '>='; above 1 fails)\n" + text)
        out = seeds_dir(root, args.full)
        out.mkdir(parents=True, exist_ok=True)
        (out / "margins.json").write_text(json.dumps(table_rows, indent=1, default=str) + "\n")
        (out / "margins.txt").write_text(text + "\n")
        return 1 if any(r["failed"] or r["missing"] or (r["kind"] == "counterexample" and r["spread"] != 0)
                        for r in table_rows) else 0

    stage = root / "_build" / "stage"
    _stage(root, stage)
    for e in entries:  # chapters not run now keep their last executed copy, else the source
        if e not in selected and not (stage / f"{e}.ipynb").exists():
            shutil.copy2(root / f"{e}.ipynb", stage / f"{e}.ipynb")

    mode = "full" if args.full else "fast"
    use_cache = cache_enabled(args.no_cache)
    code = code_digest(root)
    keys = {e: chapter_key(root / f"{e}.ipynb", code=code, mode=mode,
                           parameters=effective_parameters(root / f"{e}.ipynb", full=args.full, overrides=overrides))
            for e in selected}
    done: dict[str, dict] = {}
    if use_cache and not args.force:
        for e in selected:
            row = restore_from_cache(root, stage, e, key=keys[e], mode=mode)
            if row is not None:
                done[e] = row
    to_run = [e for e in selected if e not in done]
    extra = f" with {overrides}" if overrides else ""
    cached_note = f"; {len(done)} from the cache" if done else ""
    print(f"executing {len(to_run)} of {len(selected)} chapter(s) at {mode} parameters{extra}{cached_note}"
          + ("" if use_cache else " (cache not used)"), flush=True)
    for e in selected:
        if e in done:
            r = done[e]
            print(f"  {r['chapter']:<28} cached  (ran {r.get('date_utc', '?')} in {r['seconds']:.1f} s, "
                  f"key {keys[e][:12]})", flush=True)

    def one(entry):
        row = run_chapter(root, stage, entry, full=args.full, cell_timeout=args.cell_timeout, overrides=overrides)
        row["key"] = keys[entry]
        if use_cache:
            store_in_cache(root, stage, entry, row)
        print(f"  {row['chapter']:<28} {'ok' if row['ok'] else 'FAILED':<7} {row['seconds']:7.1f} s", flush=True)
        if row["detail"]:
            print(f"chapter {row['chapter']} FAILED\n{row['detail']}\n", flush=True)
        return row

    t0 = time.perf_counter()
    alone = [e for e in to_run if runs_alone(root / f"{e}.ipynb")]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        together = [e for e in to_run if e not in alone]
        done.update(zip(together, pool.map(one, together), strict=True))
    done.update((e, one(e)) for e in alone)             # timing chapters: nothing runs beside them
    rows = [done[e] for e in selected]
    total = time.perf_counter() - t0

    records = _write_reports(root, stage, entries, rows)

    failed = [r["chapter"] for r in rows if not r["ok"]]
    bad_claims = [f"{r['id']} ({r['part']}, {r['chapter']})" for r in records if not r["passed"]]
    n_cached = sum(1 for r in rows if r.get("cached"))
    print("\nsummary")
    print(f"  {'chapter':<28} {'seconds':>8}  {'ok':<3} run")
    for r in rows:
        how = f"from the cache (ran {r.get('date_utc', '?')})" if r.get("cached") else "ran now"
        print(f"  {r['chapter']:<28} {r['seconds']:8.1f}  {'yes' if r['ok'] else 'NO':<3} {how}")
    print(f"  {'total (executed now)':<28} {total:8.1f}")
    print(f"{n_cached} of {len(rows)} chapters from the cache, {len(rows) - n_cached} executed"
          + ("" if use_cache else " (cache not used)"))
    print(f"claims: {len(records)} recorded, {len(records) - len(bad_claims)} passed -> _build/claims.json")
    if bad_claims:
        print("failed claims: " + ", ".join(bad_claims))

    html_rc = 0
    if not args.no_html:
        html_rc = build_html(root, stage)
        if html_rc == 0:
            print(f"\nopen {root / '_build' / 'html' / 'index.html'}")
    if failed:
        print(f"FAILED chapters: {', '.join(failed)}")
    return 1 if (failed or bad_claims or html_rc) else 0


if __name__ == "__main__":
    sys.exit(main())
