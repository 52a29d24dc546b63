"""dufm: numerics for the deep unconstrained feature model (Garrod & Keating, NeurIPS 2025).

Modules, one responsibility each:

- ``validation``: argument checks shared by every public function.
- ``structures``: the logit structures of the paper (DNC, the low-rank pair structure) and the
  Lemma-1 factorisation of a logit matrix into deep-UFM parameters.
- ``losses``: the deep-UFM loss, its reference gradient and the reduced loss of Lemma 1.
- ``trainer``: batched full-batch gradient descent over many independent runs (its engine:
  ``_engine``).
- ``sweep``: resumable sweeps of many runs in batches; ``cluster``: the same on a Dask cluster.
- ``metrics``: neural-collapse metrics, singular-value profiles and a structure classifier.
- ``checks``: the measured-versus-theory checks that chapters assert.
- ``theory``: closed forms and one-dimensional optimisations of Theorems 1-3.
- ``run``: the papermill runner (``python -m dufm.run``).
"""

__version__ = "0.1.0"
