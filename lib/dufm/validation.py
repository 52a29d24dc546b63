"""Argument checks: every public routine validates its inputs here, so errors read the same.

Each check raises ``ValueError`` naming the argument, its value and the rule it broke.
"""

from __future__ import annotations

import math
import numbers

import torch

ACTIVATIONS = ("linear", "relu")


def _fail(name: str, value: object, rule: str) -> None:
    raise ValueError(f"{name}={value!r} is not allowed: {rule}")


def check_int(name: str, value: object, minimum: int) -> int:
    """Check that ``value`` is an integer (not a bool) with ``value >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, f"must be an integer >= {minimum}")
    if value < minimum:
        _fail(name, value, f"must be an integer >= {minimum}")
    return value


def check_positive(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number > 0 (e.g. the weight decay lam)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(name, value, "must be a finite number > 0")
    if value <= 0:
        _fail(name, value, "must be a finite number > 0")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number >= 0 (e.g. a scale)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(name, value, "must be a finite number >= 0")
    if value < 0:
        _fail(name, value, "must be a finite number >= 0")
    return float(value)


def check_sizes(K: object = None, n: object = None, d: object = None, L: object = None) -> None:
    """Check sizes: K >= 2 classes, n >= 1 samples per class, width d >= K, depth L >= 1."""
    if K is not None:
        check_int("K", K, 2)
    if n is not None:
        check_int("n", n, 1)
    if L is not None:
        check_int("L", L, 1)
    if d is not None:
        check_int("d", d, 1)
        if K is not None and d < K:
            _fail("d", d, f"the width must be at least the number of classes K={K}")


def check_class_sizes(class_sizes: object, K: int | None = None, N: int | None = None) -> list:
    """Check class sizes n_1..n_K (Appendix A): a sequence of at least 2 integers >= 1, of
    length ``K`` and sum ``N`` when those are given. Returns them as a list of ints."""
    if isinstance(class_sizes, torch.Tensor):
        class_sizes = class_sizes.tolist()
    if isinstance(class_sizes, str | bytes) or not hasattr(class_sizes, "__len__"):
        _fail("class_sizes", class_sizes, "must be a sequence of K >= 2 integers >= 1")
    sizes = list(class_sizes)
    if len(sizes) < 2:
        _fail("class_sizes", sizes, "must hold K >= 2 sizes (one per class)")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            _fail("class_sizes", sizes, "every class size must be an integer >= 1")
    sizes = [int(size) for size in sizes]
    if K is not None and len(sizes) != K:
        _fail("class_sizes", sizes, f"must hold one size per class, K={K}")
    if N is not None and sum(sizes) != N:
        _fail(
            "class_sizes",
            sizes,
            f"the sizes must sum to the N={N} columns (they sum to {sum(sizes)})",
        )
    return sizes


def check_activation(activation: object) -> str:
    """Check that ``activation`` is one of ``ACTIVATIONS``."""
    if activation not in ACTIVATIONS:
        _fail("activation", activation, f"must be one of {ACTIVATIONS}")
    return activation


def check_device(device: object) -> torch.device:
    """Check that ``device`` names a torch device available here ("cpu", "cuda", "cuda:1")."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        _fail("device", device, "must be a torch device name such as 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail("device", device, "CUDA is not available on this machine; use device='cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        _fail("device", device, "must be 'cpu', 'cuda' or 'mps'")
    return dev


def check_dtype(dtype: object) -> torch.dtype:
    """Check that ``dtype`` is float32 or float64 (a torch dtype or its name)."""
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    if dtype in (torch.float32, torch.float64):
        return dtype
    _fail("dtype", dtype, "must be 'float32' or 'float64'")


def check_logits(Z: torch.Tensor, name: str = "Z") -> tuple[int, int]:
    """Check a K x Kn logit matrix with class-ordered columns; return (K, n)."""
    if not isinstance(Z, torch.Tensor) or Z.dim() != 2:
        _fail(name, getattr(Z, "shape", Z), "must be a 2-D tensor of shape (K, K*n)")
    K, N = Z.shape
    check_int(f"{name}.shape[0] (K)", K, 2)
    if N % K != 0 or N == 0:
        _fail(f"{name}.shape", tuple(Z.shape), "the column count must be a positive multiple of K")
    return K, N // K
