r"""The paper's statements that the book checks: one registry, in the paper's order.

Each entry has the stable claim id the chapters record under (see `adaptedflow.book.claims`),
the paper's label and section, and the statement in one line.  The Claims page lists
every entry, so statements no chapter has checked yet appear as "not yet reproduced".
"""

from __future__ import annotations

#: (id, label, section, one-line statement), in the paper's order.
STATEMENTS: tuple[tuple[str, str, str, str], ...] = (
    ("eq-1.13", "(1.13)", "§1.3", "The comparison model ∂ₛx = −∇ₓC has the solution x(s) = y_ω + e^{−s/N}(x(0) − y_ω)."),
    ("eq-1.14", "(1.14)", "§1.3", "Along the comparison model C(s) = e^{−2s/N}C(0), a rate uniform in the initial data."),
    ("eq-1.21", "(1.21)", "§1.4", "∇_θC = Dᵀ∇ₓC: the cost depends on θ only through the output layer."),
    ("eq-1.31", "(1.31)", "§1.4.1", "The adapted field satisfies D∂ₛθ = −∇ₓC and lies in range(Dᵀ)."),
    ("thm-2.1", "Theorem 2.1", "§2.1", "Under the rank condition, the adapted flow drives C to 0 at the uniform rate e^{−2s/N}."),
    ("prop-2.2", "Proposition 2.2", "§2.1", "If the normalised columns of D are i.i.d. with an absolutely continuous law, rank D = QN a.s."),
    ("thm-2.3", "Theorem 2.3", "§2.2", "The stopping time is a priori: s_*(ε) = (N/2)log(C(0)/ε)."),
    ("prop-2.4", "Proposition 2.4", "§2.3", "The adapted direction is the gradient of C for the bundle metric h on V = range(Dᵀ)."),
    ("sec-2.4-integrability", "§2.4 (open question)", "§2.4", "Is the bundle V integrable (Frobenius condition (2.31))?"),
    ("sec-2.4-bracket-generating", "§2.4", "§2.4", "If V is not integrable, (R^K, V, h) is sub-Riemannian: is V bracket generating?"),
    ("prop-3.1", "Proposition 3.1", "§3", "Where ‖D‖_op ≤ λ, the standard flow needs time ≥ (ℓ_U/λ)·sqrt(N/(2C₀)) to travel arc length ℓ_U."),
    ("lem-3.2", "Lemma 3.2", "§3", "A non-global equilibrium of the standard flow has rank D < QN."),
    ("thm-4.1", "Theorem 4.1", "§4", "With rank loss, the pseudo-inverse flow gives ∂ₛx = −P_r∇ₓC."),
    ("thm-4.2", "Theorem 4.2", "§4", "Where rank D = r on an open set, the equilibria form a (K − r)-dimensional manifold."),
    ("sec-4.2", "§4.2", "§4.2", "A local equilibrium is left by θ_* + ηn, n normal to the critical manifold, sign of η chosen to lower C."),
    ("thm-5.1", "Theorem 5.1", "§5", "Under-parametrized: the Gauss–Newton flow gives ∂ₛx = −P̃∇ₓC and ∂ₛC = −|P̃∇ₓC|²."),
    ("rem-5.2", "Remark 5.2", "§5", "At a critical point C = |P̃^⊥(x − y_ω)|²/2N, generically > 0: no global minimum."),
    ("prop-5.3", "Proposition 5.3", "§5", "The Gauss–Newton flow is the gradient flow of C for the pullback metric g = DᵀD."),
    ("sec-6", "§6", "§6", "Borderline K = QN: both adapted flows coincide, ∂ₛθ = −D⁻¹∇ₓC, and the rate e^{−2s/N} holds."),
)

#: Statements beyond the paper that chapters check (discrete time, implementation).
EXTRA_STATEMENTS: tuple[tuple[str, str, str, str], ...] = (
    ("discrete-rate", "Discrete rate", "beyond the paper", "Euler steps of (1.30) give C_k ≈ (1 − h/N)^{2k} C_0, with an O(h²) defect per step."),
    ("discrete-stopping", "Discrete stopping", "beyond the paper", "The a-priori step count k_*(ε) from the discrete rate matches the measured steps."),
    ("discrete-comparison", "Against GD and Adam", "beyond the paper", "Adapted descent against tuned gradient descent and Adam on real data: steps, time, generalisation."),
    ("impl-adapted-direction", "Three ways to one direction", "implementation", "Dense, layer-wise-kernel and matrix-free computations of −D⁺∇ₓC agree."),
)


#: The one verdict per statement (vocabulary: `adaptedflow.book.claims.VERDICTS`).  Findings
#: that qualify a verdict are measured, so they live in the chapters' records.
VERDICT: dict[str, str] = {
    **{sid: "reproduced" for sid, *_ in STATEMENTS},
    # §4.2 as written: at a fixed equilibrium every n in span{∇f_i} raises C although H has
    # a negative eigenvalue (`adaptedflow.paper`-level construction in `critical`).
    "sec-4.2": "fails as written",
    # the paper asks whether V is integrable; the book answers: it is not.
    "sec-2.4-integrability": "open question answered",
    **{sid: "beyond the paper" for sid, *_ in EXTRA_STATEMENTS},
}


def statement_ids() -> list[str]:
    """The registered claim ids: the paper's, in its order, then those beyond it."""
    return [s[0] for s in (*STATEMENTS, *EXTRA_STATEMENTS)]
