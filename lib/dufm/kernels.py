"""Small-matrix kernels for the engine's CPU step of the linear model (``dufm._engine``).

The linear step multiplies through the K-dimensional bottleneck, so every product has one
dimension K = 10 (10 x 70 x 70 and 10 x 70 x 50 for Figure 1). A general batched GEMM runs those
shapes well below the machine's large-matmul rate, and each call pays a dispatch. Here the
products are MKL's JIT GEMM kernels, generated once per exact shape, transposition and beta
(``mkl_cblas_jit_create_{d,s}gemm``), and the whole step of a block of runs is one
numba-compiled loop (``nogil``) that takes one run at a time through every product, the softmax
(with MKL's vector ``exp``) and the updates while that run's matrices sit in the core's cache.
The loop calls the kernels through their addresses, so one compiled loop per dtype serves every
shape and is cached on disk. Serves every linear training run of the book (chapters 1, 2, 5 and
10, through ``dufm.trainer.train``).

``benchmarks/README.md`` gives the alternatives timed and the measured rates. ``backend()``
says which path a CPU run takes: ``"mkl"`` (this module) where numba and the ``mkl`` wheel load
and MKL generates the kernels, else ``"torch"`` (batched ``torch.bmm``, always available, and
the only path on a GPU); ``DUFM_KERNELS`` or ``train(kernels=...)`` chooses.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import weakref
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["KERNELS", "LinearKernels", "backend", "mkl_unavailable_reason"]

KERNELS = ("auto", "mkl", "torch")
ENV = "DUFM_KERNELS"

# MKL's enumerations (mkl_types.h) and VML modes (mkl_vml_defines.h).
_ROW_MAJOR, _NOTRANS, _TRANS = 101, 111, 112
_JIT_ERROR = 2
_VML_HA = 0x2  # high accuracy (at most 1 ulp): float64 results agree with torch's exp
# Softmax exponents are raised to these (exp of them is just above the smallest normal float).
_EXP_LOW = {np.float64: -708.0, np.float32: -87.0}


@functools.cache
def _mkl():
    """(libmkl_rt, numba) loaded once; raises ImportError/OSError saying what is missing."""
    import numba  # noqa: F401 - the loop below is compiled by numba

    files = metadata.files("mkl") or []
    libs = sorted(str(f.locate()) for f in files if Path(str(f)).name.startswith("libmkl_rt.so"))
    if not libs:
        raise ImportError("the mkl distribution has no libmkl_rt.so (not Linux x86-64?)")
    lib = ctypes.CDLL(libs[-1], mode=ctypes.RTLD_LOCAL)
    lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Threading_Layer(1)  # sequential: the engine's worker threads are the parallelism
    for name, real in (("d", ctypes.c_double), ("s", ctypes.c_float)):
        create = getattr(lib, f"mkl_cblas_jit_create_{name}gemm")
        create.restype = ctypes.c_int
        create.argtypes = [ctypes.POINTER(ctypes.c_void_p)] + [ctypes.c_int] * 6
        create.argtypes += [real, ctypes.c_int, ctypes.c_int, real, ctypes.c_int]
        get = getattr(lib, f"mkl_jit_get_{name}gemm_ptr")
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    lib.mkl_jit_destroy.restype, lib.mkl_jit_destroy.argtypes = ctypes.c_int, [ctypes.c_void_p]
    return lib


@functools.cache
def mkl_unavailable_reason() -> str | None:
    """None where the MKL kernels can run on this machine, else why not (one line)."""
    try:
        lib = _mkl()
        _Gemm(lib, np.float64, False, False, 2, 2, 2, 0.0)  # MKL generates a kernel here
        from . import _kernel_loops  # noqa: F401 - numba compiles (or loads) the loop
    except (ImportError, OSError, AttributeError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def backend(kernels: str, *, device_type: str, activation: str, compile: bool = False) -> str:
    """The path a run takes: ``"mkl"`` or ``"torch"`` (``kernels`` as ``train`` takes it).

    ``"auto"`` (or ``$DUFM_KERNELS`` when set) picks ``"mkl"`` for the linear model on the CPU
    where it loads, else ``"torch"``; ``"mkl"`` asked where it cannot run is an error saying why.
    ``compile=True`` (``torch.compile`` of the torch step) takes the torch path.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels={kernels!r} is not allowed: must be one of {KERNELS}")
    if kernels == "auto":
        kernels = os.environ.get(ENV, "auto")
        if kernels not in KERNELS:
            raise ValueError(f"{ENV}={kernels!r} is not allowed: must be one of {KERNELS}")
    if kernels == "torch":
        return "torch"
    if device_type != "cpu" or activation != "linear" or compile:
        if kernels == "mkl":
            raise ValueError(
                f"kernels='mkl' is not allowed with device={device_type!r}, "
                f"activation={activation!r}, compile={compile!r}: the MKL kernels serve the "
                "linear model on the CPU, uncompiled"
            )
        return "torch"
    reason = mkl_unavailable_reason()
    if reason is None:
        return "mkl"
    if kernels == "mkl":
        raise ValueError(
            f"kernels='mkl' is not allowed here: the MKL kernels do not load ({reason})"
        )
    return "torch"


class _Gemm:
    """One MKL JIT kernel: row-major C = op(A) op(B) + beta C, op(A) m x k, op(B) k x n,
    every matrix dense (leading dimension = its number of columns)."""

    def __init__(self, lib, dtype, transa: bool, transb: bool, m: int, n: int, k: int, beta):
        name = "d" if dtype == np.float64 else "s"
        lda = m if transa else k
        ldb = k if transb else n
        handle = ctypes.c_void_p()
        create = getattr(lib, f"mkl_cblas_jit_create_{name}gemm")
        trans = (_TRANS if transa else _NOTRANS, _TRANS if transb else _NOTRANS)
        status = create(ctypes.byref(handle), _ROW_MAJOR, *trans, m, n, k, 1.0, lda, ldb, beta, n)
        if status == _JIT_ERROR or not handle.value:
            raise RuntimeError(f"MKL could not create a {name}gemm kernel for {m}x{n}x{k}")
        self.handle, self._lib = handle.value, lib
        self.address = getattr(lib, f"mkl_jit_get_{name}gemm_ptr")(handle)
        self._finalizer = weakref.finalize(self, lib.mkl_jit_destroy, handle.value)


_CACHE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_CACHE_LOCK = threading.Lock()


def _gemm(dtype, transa: bool, transb: bool, m: int, n: int, k: int, beta: float) -> _Gemm:
    """The kernel for these settings, shared while any block holds it (freed after)."""
    dtype = np.dtype(dtype).type
    key = (np.dtype(dtype).str, transa, transb, m, n, k, float(beta))
    with _CACHE_LOCK:
        kernel = _CACHE.get(key)
        if kernel is None:
            kernel = _CACHE[key] = _Gemm(_mkl(), dtype, transa, transb, m, n, k, beta)
    return kernel


class LinearKernels:
    """The step of one block of the linear model through MKL kernels (``dufm._engine._Block``).

    ``params`` are the block's tensors [H_1 (R, d, N), W_1 .. W_{L-1} (R, d, d), W_L (R, K, d)]
    (contiguous CPU float32/float64); ``coef`` (R,) = -lr/N, ``decay`` (R,) = 1 - lr lam and
    ``targets`` (K, N) as the torch step takes them. ``advance(n)`` takes n steps, updating
    ``params`` in place.
    """

    def __init__(self, params: list, targets, coef, decay):
        from ._kernel_loops import linear_steps

        H, WL = params[0], params[-1]
        (_, d, N), K, L = H.shape, WL.shape[-2], len(params) - 1
        dt = np.float64 if H.element_size() == 8 else np.float32
        self._arrays = [P.numpy() for P in params]  # views: the step writes the tensors
        self._addr = np.array([a.ctypes.data for a in self._arrays], dtype=np.int64)
        self._stride = np.array([a[0].nbytes for a in self._arrays], dtype=np.int64)
        coef, decay = np.asarray(coef, dtype=dt), np.asarray(decay, dtype=dt)
        fixed = [
            _gemm(dt, False, False, K, d, d, 0.0),  # A_l = A_{l+1} W_l
            _gemm(dt, False, False, K, N, d, 0.0),  # Z = A_1 H_1
            _gemm(dt, False, True, K, d, N, 0.0),  # B_1 = G H_1^T
            _gemm(dt, False, True, K, d, d, 0.0),  # B_{l+1} = B_l W_l^T
        ]
        betas = sorted(set(decay.tolist()))
        upd = {
            b: (_gemm(dt, True, False, d, N, K, b), _gemm(dt, True, False, d, d, K, b))
            for b in betas
        }
        self._kernels = fixed + [g for pair in upd.values() for g in pair]  # kept alive
        self._fixed = np.array([x for g in fixed for x in (g.address, g.handle)], dtype=np.int64)
        self._update = np.array(
            [[x for g in upd[b] for x in (g.address, g.handle)] for b in decay.tolist()],
            dtype=np.int64,
        )
        lib = _mkl()
        exp = lib.vmdExp if dt == np.float64 else lib.vmsExp
        self._exp = ctypes.cast(exp, ctypes.c_void_p).value
        self._coef, self._decay, self._low = coef, decay, _EXP_LOW[dt]
        self._targets = np.ascontiguousarray(targets.numpy(), dtype=dt)
        self._A = np.zeros((max(L - 1, 1), K, d), dtype=dt)
        self._B = np.zeros((L, K, d), dtype=dt)
        self._Z, self._G = np.zeros((K, N), dtype=dt), np.zeros((K, N), dtype=dt)
        self._col = np.zeros((2, N), dtype=dt)
        self._WL = self._arrays[-1]
        self._loop, self._L = linear_steps, L

    def advance(self, n: int) -> None:
        self._loop(
            self._addr,
            self._stride,
            self._WL,
            self._fixed,
            self._update,
            self._coef,
            self._decay,
            self._targets,
            self._A,
            self._B,
            self._Z,
            self._G,
            self._col,
            self._exp,
            _VML_HA,
            self._low,
            self._L,
            n,
        )
