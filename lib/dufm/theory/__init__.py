"""The paper's theory in closed form and by optimisation, one module per subject.

- ``scales``: Theorem 1 (the DNC and pair structures in closed form, the equal-scale inequality,
  each structure at its optimal scale) and the critical scales of Eq. 19 and Eq. 27 (Theorems 4
  and 6); chapters 2, 5 and 6.
- ``critical``: Eq. 19 and Eq. 27 solved for the weight decay, the fold of the critical scales,
  the DNC attraction threshold and the asymptotic fit of the flatness ratio (Theorems 4 and 6);
  chapter 6.
- ``superiority``: Definition 3 and Theorem 2 (diagonal superiority, q_K, the rank ordering with
  depth); chapter 3.
- ``optimum``: Theorem 3 (the global optimum of the reduced loss and its rank); chapter 4.

Every public name is re-exported here, so ``dufm.theory.optimal_scale`` and the like work.
"""

from ..structures import STRUCTURES
from .critical import (
    branch_scale,
    critical_weight_decay,
    dnc_threshold_scale,
    fold_scale,
    inverse_scale_fit,
    pair_threshold_scale,
    predict_inverse_scale,
)
from .optimum import OptimumSearch, schatten_prox, search_global_optimum, zero_comparison_bound
from .scales import (
    GRID_POINTS,
    critical_scales,
    optimal_matrix_scale,
    optimal_mixture,
    optimal_scale,
    structure_fit,
    structure_loss,
    structure_regulariser,
    structure_singular_values,
    theorem1_holds,
    theorem1_maps,
    theorem1_stated_region,
)
from .superiority import (
    circle_gram,
    column_margins,
    is_diagonally_superior,
    max_margin_search,
    theorem2_gamma,
    theorem2_L0,
    theorem2_regulariser_holds,
)

__all__ = [
    "GRID_POINTS",
    "STRUCTURES",
    "OptimumSearch",
    "circle_gram",
    "column_margins",
    "branch_scale",
    "critical_scales",
    "critical_weight_decay",
    "dnc_threshold_scale",
    "fold_scale",
    "inverse_scale_fit",
    "predict_inverse_scale",
    "is_diagonally_superior",
    "max_margin_search",
    "optimal_matrix_scale",
    "pair_threshold_scale",
    "optimal_mixture",
    "optimal_scale",
    "schatten_prox",
    "search_global_optimum",
    "structure_fit",
    "structure_loss",
    "structure_regulariser",
    "structure_singular_values",
    "theorem1_holds",
    "theorem1_maps",
    "theorem1_stated_region",
    "theorem2_L0",
    "theorem2_gamma",
    "theorem2_regulariser_holds",
    "zero_comparison_bound",
]
