r"""adaptedflow: the executable companion to T. Chen, arXiv:2311.15487.

Three layers, imports pointing one way:

* `adaptedflow` (this namespace) — the library: problems, networks, the cost, the flows
  (1.9), (1.30), (5.2), (4.6), their directions by three methods, the integrator and
  discrete descent.  It imports neither of the layers below.
* `adaptedflow.paper` — the paper's analyses, one module per section; imports the library.
* `adaptedflow.book` — the executed book's tooling (pipeline, claims, pages, figures,
  benchmark); imports both.

Float64.  Importing this package switches JAX to float64 (`jax_enable_x64`).  Every
result here is a check of a theorem in float64: a float32 pseudo-inverse keeps about 7
digits, and a library that left the switch to its caller would, in a fresh interpreter,
build float32 arrays from `jnp.asarray` and then refuse them (the entry points reject
float32 rather than upcast it).  The switch is process-wide; a program that must stay in
float32 should not import adaptedflow.
"""


import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .comparison import (  # noqa: E402
    comparison_cost as comparison_cost,
)
from .comparison import (
    comparison_outputs as comparison_outputs,
)
from .comparison import (
    stopping_time as stopping_time,
)
from .cost import (  # noqa: E402
    cost as cost,
)
from .cost import (
    grad_x_cost as grad_x_cost,
)
from .cost import (
    jacobian as jacobian,
)
from .cost import (
    ntk_gram as ntk_gram,
)
from .cost import (
    outputs_and_jacobian as outputs_and_jacobian,
)
from .datasets import digits_problem as digits_problem  # noqa: E402
from .datasets import load_digits as load_digits
from .descent import DescentRun as DescentRun  # noqa: E402
from .descent import descent as descent
from .flows import (  # noqa: E402
    FLOWS as FLOWS,
)
from .flows import (
    adapted_direction as adapted_direction,
)
from .flows import (
    adapted_under_direction as adapted_under_direction,
)
from .flows import (
    direction as direction,
)
from .flows import (
    least_squares_direction as least_squares_direction,
)
from .flows import (
    parameter_velocity as parameter_velocity,
)
from .flows import (
    standard_direction as standard_direction,
)
from .integrate import (  # noqa: E402
    Orbit as Orbit,
)
from .integrate import (
    cost_error_budget as cost_error_budget,
)
from .integrate import (
    first_passage_time as first_passage_time,
)
from .integrate import (
    first_passage_times as first_passage_times,
)
from .integrate import (
    integrate_flow as integrate_flow,
)
from .integrate import (
    integrate_until as integrate_until,
)
from .integrate import (
    output_error_budget as output_error_budget,
)
from .kernels import DirectionInfo as DirectionInfo  # noqa: E402
from .kernels import DirectionOptions as DirectionOptions
from .kernels import adapted_step_direction as adapted_step_direction
from .linalg import (  # noqa: E402
    gram_solve as gram_solve,
)
from .linalg import (
    numerical_rank as numerical_rank,
)
from .linalg import (
    pinv_solve as pinv_solve,
)
from .linalg import (
    singular_values as singular_values,
)
from .network import MLP as MLP  # noqa: E402
from .network import identity_map as identity_map
from .network import init_params as init_params
from .network import mlp as mlp
from .network import num_params as num_params
from .numerics import EPS as EPS  # noqa: E402
from .numerics import default_rank_rtol as default_rank_rtol
from .problem import gaussian_clusters as gaussian_clusters  # noqa: E402
from .problem import one_hot_labels as one_hot_labels
from .problem import stacked_targets as stacked_targets
from .pytrees import FlatModel as FlatModel  # noqa: E402
from .pytrees import StructuredView as StructuredView
from .pytrees import flat_model as flat_model
from .pytrees import structured_view as structured_view
from .pytrees import vmap_apply as vmap_apply
from .sharding import data_sharding as data_sharding  # noqa: E402
from .sharding import replicate as replicate
from .sharding import shard_data as shard_data
from .solvers import GRAM_METHODS as GRAM_METHODS  # noqa: E402
from .solvers import AdaptedGaussNewton as AdaptedGaussNewton
from .solvers import least_squares_path as least_squares_path
from .solvers import model_residual as model_residual
from .solvers import residual as residual
from .validation import RankLossError as RankLossError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AdaptedGaussNewton",
    "DescentRun",
    "DirectionInfo",
    "DirectionOptions",
    "EPS",
    "FLOWS",
    "FlatModel",
    "GRAM_METHODS",
    "MLP",
    "Orbit",
    "RankLossError",
    "StructuredView",
    "adapted_direction",
    "adapted_step_direction",
    "adapted_under_direction",
    "comparison_cost",
    "comparison_outputs",
    "cost",
    "cost_error_budget",
    "data_sharding",
    "default_rank_rtol",
    "descent",
    "digits_problem",
    "direction",
    "first_passage_time",
    "first_passage_times",
    "flat_model",
    "gaussian_clusters",
    "grad_x_cost",
    "gram_solve",
    "identity_map",
    "init_params",
    "integrate_flow",
    "integrate_until",
    "jacobian",
    "least_squares_direction",
    "least_squares_path",
    "load_digits",
    "mlp",
    "model_residual",
    "ntk_gram",
    "num_params",
    "numerical_rank",
    "one_hot_labels",
    "output_error_budget",
    "outputs_and_jacobian",
    "parameter_velocity",
    "pinv_solve",
    "replicate",
    "residual",
    "shard_data",
    "singular_values",
    "stacked_targets",
    "standard_direction",
    "stopping_time",
    "structured_view",
    "vmap_apply",
]
