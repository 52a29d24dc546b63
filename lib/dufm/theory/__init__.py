"""The paper's theory in closed form and by optimisation, one module per subject.

- ``scales``: Theorem 1 (the DNC and pair structures in closed form, the equal-scale inequality,
  each structure at its optimal scale) and the critical scales of Eq. 19 and Eq. 27 (Theorems 4
  and 6); chapters 2, 5 and 6.
- ``superiority``: Definition 3 and Theorem 2 (diagonal superiority, q_K, the rank ordering with
  depth); chapter 3.
- ``optimum``: Theorem 3 (the global optimum of the reduced loss and its rank); chapter 4.
- ``relu``: Theorem 7 (the deep ReLU UFM: the non-negative low-rank construction, its loss at its
  optimal scale against the DNC bound ``optimal_scale("dnc", ...)``, the equal-scale condition
  and the stated regions, class-symmetric ReLU DNC points); chapter 8.

Every public name is re-exported here, so ``dufm.theory.optimal_scale`` and the like work.
"""

from ..structures import STRUCTURES
from .optimum import OptimumSearch, schatten_prox, search_global_optimum, zero_comparison_bound
from .relu import (
    check_construction,
    construction_fit,
    construction_loss,
    construction_matrices,
    construction_measurements,
    construction_params,
    construction_psi,
    construction_scale,
    optimal_construction,
    symmetric_params,
    theorem7_appendix_region,
    theorem7_construction_wins,
    theorem7_maps,
    theorem7_stated_region,
)
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
    "check_construction",
    "circle_gram",
    "column_margins",
    "construction_fit",
    "construction_loss",
    "construction_matrices",
    "construction_measurements",
    "construction_params",
    "construction_psi",
    "construction_scale",
    "critical_scales",
    "is_diagonally_superior",
    "max_margin_search",
    "optimal_construction",
    "optimal_matrix_scale",
    "optimal_mixture",
    "optimal_scale",
    "schatten_prox",
    "search_global_optimum",
    "structure_fit",
    "structure_loss",
    "structure_regulariser",
    "structure_singular_values",
    "symmetric_params",
    "theorem1_holds",
    "theorem1_maps",
    "theorem1_stated_region",
    "theorem2_L0",
    "theorem2_gamma",
    "theorem2_regulariser_holds",
    "theorem7_appendix_region",
    "theorem7_construction_wins",
    "theorem7_maps",
    "theorem7_stated_region",
    "zero_comparison_bound",
]
