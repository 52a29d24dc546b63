"""The paper's theory in closed form and by optimisation, one module per subject.

- ``scales``: Theorem 1 (the DNC and pair structures in closed form, the equal-scale inequality,
  each structure at its optimal scale); chapters 2, 3 and 5.
- ``critical``: the critical-scale curve of Eq. 19 and Eq. 27 (Theorems 4 and 6): every critical
  scale, the equations solved for the weight decay, the fold, the DNC and pair attraction
  thresholds and the asymptotic fit of the flatness ratio; chapters 6 and 7.
- ``superiority``: Definition 3 and Theorem 2 (diagonal superiority, q_K, the rank ordering with
  depth); chapter 3.
- ``optimum``: Theorem 3 (the global optimum of the reduced loss and its rank); chapter 4.
- ``relu``: Theorem 7 (the deep ReLU UFM: the non-negative low-rank construction, its loss at its
  optimal scale against the DNC bound ``optimal_scale("dnc", ...)``, the equal-scale condition
  and the stated regions, class-symmetric ReLU DNC points); chapter 8.
- ``imbalanced``: Theorems A1-A3 (unequal class sizes: STEP sizes, the SEL matrix, the
  single-layer minimiser, generalised DNC against the best low-rank matrix); chapter 10.

Every public name is re-exported here, so ``dufm.theory.optimal_scale`` and the like work.
"""

from ..structures import STRUCTURES
from .critical import (
    branch_scale,
    critical_scales,
    critical_weight_decay,
    dnc_threshold_scale,
    fold_scale,
    inverse_scale_fit,
    pair_threshold_scale,
    predict_inverse_scale,
)
from .imbalanced import (
    approach_rate,
    best_low_rank,
    check_chapter_parameters,
    check_exponents_below_zero,
    check_lam_below_zero,
    check_step_Ks,
    fit_domination,
    generalised_dnc_at,
    generalised_dnc_comparison,
    generalised_dnc_losses,
    grid_thresholds,
    imbalance_sizes,
    normalised_distance,
    sel_matrix,
    single_layer_minimisers,
    step_class_sizes,
    theorem_a2_rows,
    ufm_minimiser,
    ufm_optimality_residual,
    ufm_zero_lam,
    wins_from,
)
from .optimum import (
    OptimumSearch,
    optimum_rows,
    schatten_prox,
    search_global_optimum,
    search_statistics,
    zero_comparison_bound,
)
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
    first_depth_holding_onward,
    is_diagonally_superior,
    max_margin_search,
    theorem2_gamma,
    theorem2_L0,
    theorem2_regulariser_holds,
    theorem2_regulariser_sides,
)

__all__ = [
    "GRID_POINTS",
    "STRUCTURES",
    "OptimumSearch",
    "check_construction",
    "best_low_rank",
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
    "generalised_dnc_losses",
    "first_depth_holding_onward",
    "branch_scale",
    "critical_weight_decay",
    "dnc_threshold_scale",
    "fold_scale",
    "inverse_scale_fit",
    "predict_inverse_scale",
    "is_diagonally_superior",
    "max_margin_search",
    "optimal_construction",
    "normalised_distance",
    "optimal_matrix_scale",
    "pair_threshold_scale",
    "optimal_mixture",
    "optimal_scale",
    "optimum_rows",
    "schatten_prox",
    "search_global_optimum",
    "search_statistics",
    "sel_matrix",
    "step_class_sizes",
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
    "ufm_minimiser",
    "ufm_optimality_residual",
    "ufm_zero_lam",
    "wins_from",
    "theorem2_regulariser_sides",
    "zero_comparison_bound",
    "approach_rate",
    "check_chapter_parameters",
    "check_exponents_below_zero",
    "check_lam_below_zero",
    "check_step_Ks",
    "fit_domination",
    "generalised_dnc_at",
    "generalised_dnc_comparison",
    "grid_thresholds",
    "imbalance_sizes",
    "single_layer_minimisers",
    "theorem_a2_rows",
]
