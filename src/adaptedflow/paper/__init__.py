r"""The paper's analyses, one module per section of T. Chen, arXiv:2311.15487.

* `rank` — §2.1: the rank condition rank D = QN, on measures over θ and on orbits;
* `geometry` — §2.3–2.4: the bundle of outputs, the distribution V and its brackets;
* `trapping` — §3: equilibria of the standard flow away from the global minimum;
* `critical` — §4: rank loss, critical manifolds and the least-squares flow (4.6);
* `rank_loss` — §4 on orbits: a structurally rank-deficient D (Theorem 4.1), §4.2's rule and
  the rank-restoring escape;
* `regimes` — §5–6: the under-parametrized flow (5.2) and the borderline K = QN;
* `discrete` — the explicit Euler scheme of (1.30): closed forms, Taylor defect, race;
* `scale` — Theorems 2.1 and 2.3 at scale: an orbit cut decade by decade, a fixed-step matrix-free stretch.

Each module builds on the library (`adaptedflow`) only; the book (`adaptedflow.book`)
calls into these.  Import a module explicitly: ``from adaptedflow.paper import rank``.
"""
