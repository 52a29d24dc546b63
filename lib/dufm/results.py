"""The paper's numbered results and figures, each with the chapter that checks it (the scorecard's
rows, ``dufm.scorecard``)."""

# Every numbered result and figure of the paper: (key, chapter stem, what it states). The
# statements are MyST Markdown with $...$ math (the scorecard page renders them with MathJax).
RESULTS = (
    (
        "Lemma 1",
        "01_deep_ufm",
        r"every critical point of the linear deep UFM is balanced, "
        r"$W_\ell W_\ell^\top = W_{\ell+1}^\top W_{\ell+1}$, with aligned singular vectors",
    ),
    (
        "Lemma 2",
        "06_flat_attractive",
        r"$S\rho'_c S = K s_c s_c^\top + S$, where $\rho_c = e^\alpha \rho'_c / D^2 + "
        r"\rho''_c / D^2$, $D = e^\alpha + K - 1$, $\rho''_c$ positive semi-definite, is the "
        r"Hessian of one DNC logit column's cross-entropy (Eq. 25; the last step of the proof "
        r"of Theorem 4(ii))",
    ),
    ("Proposition 1", "01_deep_ufm", "a DNC solution satisfies DNC1-3 in every layer"),
    (
        "Theorem 1",
        "02_dnc_not_optimal",
        r"DNC is not a global minimum for $K \ge 4, L \ge 3$ or "
        r"$K \ge 6, L = 2$ (the pair structure is lower)",
    ),
    (
        "Theorem 2",
        "03_rank_ordering",
        r"beyond some depth $L_0$ a diagonally superior $M$ of rank $q$ "
        r"has a lower optimal loss than any $X$ of rank $p > q$",
    ),
    (
        "Theorem 3",
        "04_optimal_structure",
        r"as $L$ grows, the optimum's singular values vanish ($\lambda_L L \to \infty$) or at "
        r"most $q_K = 2$ of the normalised ones survive ($\lambda_L L \to 0$)",
    ),
    (
        "Theorem 4",
        "06_flat_attractive",
        r"DNC critical points exist (Eq. 19); the scale-divergent "
        r"ones have no negative Hessian eigenvalue for $\lambda$ suitably small",
    ),
    (
        "Theorem 5",
        "07_landscape_dimension",
        r"$R(d) = D_\mathrm{DNC} / D_\mathrm{pair}$ increases with $d$, is below 1 at $d = K$ "
        r"and tends to $(K-1)/r$",
    ),
    (
        "Theorem 6",
        "06_flat_attractive",
        r"the flatness ratio of the DNC and pair critical points tends to a constant as "
        r"$\lambda \to 0$",
    ),
    (
        "Theorem 7",
        "08_relu",
        r"under Assumption 1 a non-negative low-rank construction beats every "
        r"ReLU DNC solution in the stated $(K, L)$ region",
    ),
    ("Theorem A1", "10_imbalanced", "Theorem 2 with unequal class sizes"),
    ("Theorem A2", "10_imbalanced", "Theorem 3 with unequal class sizes"),
    (
        "Theorem A3",
        "10_imbalanced",
        r"under an $(R, \rho)$-STEP imbalance, $K \ge 4$, no generalised DNC "
        r"global minimum for $\lambda < \lambda_0$ and $L > L_0$",
    ),
    (
        "Figure 1",
        "02_dnc_not_optimal",
        "gradient descent on the Figure-1 model ends in DNC or in "
        "the lower-loss pair structure, depending on the initialisation",
    ),
    (
        "Figure 2",
        "05_dnc_prevalence",
        r"the probability of DNC rises with the width $d$ and falls with the weight decay "
        r"$\lambda$",
    ),
    (
        "Figure 3",
        "09_real_networks",
        "ResNet-20 with a deep linear or ReLU head, UFM-style regularisation: low-rank "
        "solutions below the DNC bound (4 singular values MNIST, 3 CIFAR-10)",
    ),
    (
        "Figure 4",
        "09_real_networks",
        "CIFAR-10, standard regularisation: low-rank head features, "
        "a class-mean logit matrix that is not a simplex",
    ),
    (
        "Figure 5",
        "05_dnc_prevalence",
        r"the rank of the converged solution against $d$ and $\lambda$; intermediate ranks "
        r"are mixtures",
    ),
    (
        "Figure 6",
        "08_relu",
        "deep ReLU UFM: gradient descent finds a low-rank solution below the DNC bound",
    ),
    (
        "Figure 7",
        "09_real_networks",
        "MNIST, ReLU head with $L = 4$: a low-rank solution below the DNC bound",
    ),
    ("Figure 8", "09_real_networks", "MNIST, standard regularisation: low-rank head features"),
)
