r"""adaptedflow: the executable companion to T. Chen, arXiv:2311.15487.

Importing this package switches JAX to float64 (`jax_enable_x64`): every check of a
theorem here needs it (a float32 pseudo-inverse keeps about 7 digits).
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._checks import RankLossError as RankLossError  # noqa: E402
from .claims import (  # noqa: E402
    ClaimFailed as ClaimFailed,
    check as check,
    check_frequency as check_frequency,
    checker as checker,
    clopper_pearson as clopper_pearson,
)
from .comparison import (  # noqa: E402
    comparison_cost as comparison_cost,
    comparison_outputs as comparison_outputs,
    stopping_time as stopping_time,
)
from .cost import (  # noqa: E402
    cost as cost,
    grad_x_cost as grad_x_cost,
    jacobian as jacobian,
    ntk_gram as ntk_gram,
    outputs_and_jacobian as outputs_and_jacobian,
)
from .flows import (  # noqa: E402
    FLOWS as FLOWS,
    adapted_direction as adapted_direction,
    adapted_under_direction as adapted_under_direction,
    direction as direction,
    least_squares_direction as least_squares_direction,
    parameter_velocity as parameter_velocity,
    standard_direction as standard_direction,
)
from .integrate import (  # noqa: E402
    Orbit as Orbit,
    first_passage_time as first_passage_time,
    first_passage_times as first_passage_times,
    integrate_flow as integrate_flow,
    integrate_until as integrate_until,
    output_error_budget as output_error_budget,
    cost_error_budget as cost_error_budget,
)
from .linalg import (  # noqa: E402
    gram_solve as gram_solve,
    numerical_rank as numerical_rank,
    pinv_solve as pinv_solve,
    singular_values as singular_values,
)
from .network import identity_map as identity_map, init_params as init_params, mlp as mlp, num_params as num_params  # noqa: E402
from .problem import gaussian_clusters as gaussian_clusters, one_hot_labels as one_hot_labels, stacked_targets as stacked_targets  # noqa: E402

from . import (  # noqa: E402
    critical as critical,
    discrete as discrete,
    geometry as geometry,
    kernels as kernels,
    rank as rank,
    regimes as regimes,
    trapping as trapping,
)
from .kernels import adapted_step_direction as adapted_step_direction  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ClaimFailed", "FLOWS", "adapted_step_direction", "critical", "discrete", "geometry", "kernels", "rank", "regimes", "trapping", "Orbit", "RankLossError", "adapted_direction", "adapted_under_direction",
    "check", "check_frequency", "checker", "clopper_pearson", "comparison_cost", "comparison_outputs", "cost", "direction",
    "first_passage_time", "first_passage_times", "gaussian_clusters", "grad_x_cost", "gram_solve", "identity_map",
    "init_params", "integrate_flow", "integrate_until", "output_error_budget", "cost_error_budget", "jacobian", "least_squares_direction", "mlp", "ntk_gram",
    "num_params", "numerical_rank", "one_hot_labels", "outputs_and_jacobian", "parameter_velocity",
    "pinv_solve", "singular_values", "stacked_targets", "standard_direction", "stopping_time",
]
