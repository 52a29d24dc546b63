"""Row (d) of ``sweep.py``: the Figure 1 model written the way a JAX user would (issue 15).

A loss function of one run's matrices, ``jax.grad`` for its gradient, ``jax.vmap`` over the
runs, ``jax.jit`` over a ``lax.scan`` of the gradient-descent steps; the weight decay is written
into the loss, (lam/2) sum ||P||^2, as the paper's Eq. (1) has it. JAX is a benchmark extra
(``benchmarks/requirements.txt``), not a dependency of the book: ``available()`` is False where
it is not installed and ``sweep.py`` then skips the row.
"""

from __future__ import annotations

import time

import numpy as np


def available() -> str | None:
    """The installed JAX version, or None."""
    try:
        import jax
    except ImportError:
        return None
    return jax.__version__


def make_trainer(K: int, n: int, lam: float, lr: float, steps: int, dtype: str):
    """A jitted function: stacked params [(R, d, Kn), (R, d, d), ..., (R, K, d)] -> the params
    after ``steps`` full-batch gradient-descent steps of every run."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    _enable_float64()
    Y = jnp.asarray(np.repeat(np.eye(K), n, axis=1), dtype=dtype)  # one-hot, class-ordered

    def loss(params):
        Z = params[0]
        for W in params[1:]:
            Z = W @ Z
        fit = -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(Z, axis=0), axis=0))
        return fit + 0.5 * lam * sum(jnp.sum(P**2) for P in params)

    grads = jax.vmap(jax.grad(loss))  # over the leading run dimension

    @jax.jit
    def run(params):
        def step(ps, _):
            return [P - lr * G for P, G in zip(ps, grads(ps), strict=True)], None

        return lax.scan(step, params, None, length=steps)[0]

    return run


def _enable_float64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 needs it; float32 arrays stay float32


def to_jax(params, dtype: str) -> list:
    """Torch CPU tensors (``dufm.trainer.init_params``) as JAX arrays of ``dtype``."""
    import jax.numpy as jnp

    _enable_float64()
    return [jnp.asarray(P.numpy(), dtype=dtype) for P in params]


def seconds(run, params) -> float:
    """Seconds of one call (the function is compiled before: call it once first)."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(run(params))
    return time.perf_counter() - t0
