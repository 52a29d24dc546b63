"""dufm: numerics for the deep unconstrained feature model (Garrod & Keating, NeurIPS 2025).

Modules, one responsibility each (the chapter that uses a module most is named in its docstring):

- ``validation``: argument checks shared by every public function.
- ``structures``: the logit structures of the paper in one vocabulary (``"dnc"``, ``"pair"``,
  mixtures) and the Lemma-1 factorisation of a logit matrix into deep-UFM parameters.
- ``losses``: the deep-UFM loss, its reference gradient and the reduced loss of Lemma 1.
- ``trainer``: batched full-batch gradient descent over many independent runs, their settings
  (``RunConfig``, which ``sweep`` uses too) and result (its engine: ``_engine``).
- ``sweep``: resumable sweeps of training runs over a grid of settings (Figures 2 and 5);
  ``cluster``: the same on a Dask cluster.
- ``experiments``: training with snapshots of measured quantities (chapter 1).
- ``networks``: real networks, a backbone and a deep head, in the two regularisation regimes,
  and the head's DNC bound (chapter 9); ``backbones``: ResNet-20, ResNet-8 and an MLP, batched.
- ``data``: the image data sets of chapter 9 (digits, Fashion-MNIST, MNIST, CIFAR-10).
- ``metrics``: neural-collapse metrics, singular-value profiles and a structure classifier.
- ``geometry``: the exact Hessian, flatness, and the dimensions of the sets of critical
  parameters (Theorems 4, 5 and 6).
- ``theory``: the paper's theory by subject: ``theory.scales`` (Theorem 1, optimal scales),
  ``theory.critical`` (every critical scale, Eq. 19 and 27, thresholds), ``theory.superiority``
  (Theorem 2), ``theory.optimum`` (Theorem 3), ``theory.relu`` (Theorem 7),
  ``theory.imbalanced`` (Theorems A1-A3).
- ``outcomes``: what a run or a sweep ended in, against the optimum of its structure.
- ``stats``: Wilson intervals and permutation trend tests.
- ``checks``: the measured-versus-theory checks that chapters assert.
- ``report``: HTML tables and prose helpers; ``plotting``: figures.
- ``scorecard``: the chapters' machine-readable verdicts, read by the scorecard page.
- ``book``: the book's structure (YAML values, ``_toc.yml``, parameter sets and names).
- ``run``: the papermill runner (``python -m dufm.run``); ``failures``: what a failed run reports.
- ``files``: file modes, temporary files and atomic writes.
"""

__version__ = "0.1.0"
