r"""The book's tooling: the papermill pipeline, the claims ledger, the statement registry,
the generated pages, the figure style, the Sphinx extension and the benchmark harness.

* `pipeline` — ``python -m adaptedflow.book``: execute the chapters, build the HTML;
* `claims` — `check` / `checker`: a measured claim, its kind and verdict, recorded;
* `statements` — the paper's statements, their claim ids and verdicts;
* `report` — the Claims and Reproducibility pages, Result boxes;
* `plots` — the one figure style;  `sphinx_ext` — the Sphinx extension;
* `bench` — ``python -m adaptedflow.bench``: what one adapted direction costs.

This layer may import the library (`adaptedflow`) and the analyses (`adaptedflow.paper`);
neither imports it.  It needs the ``book`` extra (matplotlib, pyyaml, papermill, …).
"""
