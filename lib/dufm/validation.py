"""Argument checks: every public routine validates its inputs here, so errors read the same.

Each check raises ``ValueError`` naming the argument, its value and the rule it broke.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

ACTIVATIONS = ("linear", "relu")


def _fail(name: str, value: object, rule: str) -> None:
    raise ValueError(f"{name}={value!r} is not allowed: {rule}")


def _scalar(value: object) -> object:
    """A one-element 0-d tensor as its Python number; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return value.item()
    return value


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_


def check_int(name: str, value: object, minimum: int) -> int:
    """Check that ``value`` is an integer (not a bool) with ``value >= minimum``; return it as int.

    Python and NumPy integers (``numpy.int64``) and 0-d integer tensors are accepted.
    """
    value = _scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < minimum:
        _fail(name, value, f"must be an integer >= {minimum}")
    return int(value)


def _real(name: str, value: object, rule: str) -> float:
    value = _scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, value, rule)
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number > 0 (e.g. the weight decay lam).

    Python and NumPy numbers (``numpy.float32``) and 0-d tensors are accepted; returns a float.
    """
    rule = "must be a finite number > 0"
    number = _real(name, value, rule)
    if number <= 0:
        _fail(name, value, rule)
    return number


def check_nonnegative(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number >= 0 (e.g. a scale); returns a float."""
    rule = "must be a finite number >= 0"
    number = _real(name, value, rule)
    if number < 0:
        _fail(name, value, rule)
    return number


def _is_list(value: object) -> bool:
    """A list, tuple, range or 1-D array/tensor (not a string, a mapping or a bare number)."""
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__len__"):
        return False
    return getattr(value, "ndim", 1) == 1


def check_int_list(name: str, value: object, minimum: int, min_len: int = 1) -> list:
    """Check a list of integers >= ``minimum`` with at least ``min_len`` entries (e.g. ``Ks``).

    A bare number, a string or a too-short list fails naming ``name``; a bad entry fails naming
    ``name[i]``. Returns the entries as Python ints. Used by the chapters' parameter checks.
    """
    if not _is_list(value):
        _fail(name, value, f"must be a list of integers >= {minimum}")
    if len(value) < min_len:
        _fail(name, value, f"must list at least {min_len} integer(s) >= {minimum}")
    return [check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value)]


def check_number_list(name: str, value: object, min_len: int = 1, positive: bool = False) -> list:
    """Check a list of finite numbers (each > 0 with ``positive``); ``name[i]`` names a bad one."""
    if not _is_list(value):
        _fail(name, value, "must be a list of finite numbers" + (" > 0" if positive else ""))
    if len(value) < min_len:
        _fail(name, value, f"must list at least {min_len} number(s)")
    if positive:
        return [check_positive(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [_real(f"{name}[{i}]", v, "must be a finite number") for i, v in enumerate(value)]


def check_real(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number (any sign, e.g. an exponent); return it."""
    return _real(name, value, "must be a finite number")


def check_each(check, *args, **values) -> None:
    """Apply ``check(name, value, *args)`` to every keyword: one line checks a chapter's
    parameters of one kind by their own names, e.g. ``check_each(check_int, 1, steps=steps)``.
    Used by the parameter checks of every chapter."""
    for name, value in values.items():
        check(name, value, *args)


def check_bool(name: str, value: object) -> bool:
    """Check that ``value`` is True or False (not 1, not "yes")."""
    if not _is_bool(value):
        _fail(name, value, "must be True or False")
    return bool(value)


def check_choice(name: str, value: object, allowed: Sequence) -> object:
    """Check that ``value`` is one of ``allowed``."""
    if isinstance(value, list | dict) or value not in allowed:
        _fail(name, value, f"must be one of {tuple(allowed)}")
    return value


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


def require(condition: bool, name: str, value: object, rule: str) -> None:
    """Raise this module's ValueError (``name=value is not allowed: rule``) unless ``condition``."""
    if not condition:
        _fail(name, value, rule)


def check_features(H: object, name: str = "H") -> torch.Tensor:
    """Check a real, finite (d, N) feature matrix (a tensor or array); return it as float64."""
    if isinstance(H, torch.Tensor | np.ndarray) and H.ndim == 2:
        H = torch.as_tensor(H)
    if not isinstance(H, torch.Tensor) or H.dim() != 2 or min(H.shape) == 0:
        _fail(name, getattr(H, "shape", H), "must be a non-empty 2-D tensor of shape (d, N)")
    if H.is_complex() or H.dtype == torch.bool:
        _fail(f"{name}.dtype", H.dtype, "must be a real floating-point or integer dtype")
    return check_finite(name, H.double())


def check_labels(labels: object, N: int, min_per_class: int = 1) -> tuple[torch.Tensor, list]:
    """Check integer class labels of N samples, in any order, classes 0..K-1 all present, K >= 2,
    each class with at least ``min_per_class`` samples. Returns (labels as int64, class sizes).
    Used by the field's neural-collapse metrics (``dufm.metrics``, chapters 1 and 9)."""
    if isinstance(labels, np.ndarray | list | tuple | range):
        labels = torch.as_tensor(np.asarray(labels))
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        _fail("labels", getattr(labels, "shape", labels), "must be a 1-D tensor of N labels")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        _fail("labels.dtype", labels.dtype, "must be an integer dtype (class indices 0..K-1)")
    if labels.numel() != N:
        _fail("labels.shape", tuple(labels.shape), f"must be ({N},): one label per column of H")
    if int(labels.min()) < 0:
        _fail("min(labels)", int(labels.min()), "class indices must be >= 0")
    sizes = torch.bincount(labels.long()).tolist()
    if len(sizes) < 2:
        _fail("K", len(sizes), "labels must hold K >= 2 classes (K = the largest label + 1)")
    missing = [c for c, size in enumerate(sizes) if size == 0]
    if missing:
        rule = f"classes 0..K-1 must all be present; classes {missing} have no sample"
        _fail("class sizes of labels", sizes, rule)
    small = [c for c, size in enumerate(sizes) if size < min_per_class]
    if small:
        rule = f"classes {small} have fewer than {min_per_class} samples (a within-class spread"
        rule += f" needs {min_per_class})"
        _fail("class sizes of labels", sizes, rule)
    return labels.long(), sizes


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
    if dev.type not in ("cpu", "cuda", "mps"):
        _fail("device", device, "must be 'cpu', 'cuda' or 'mps'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail("device", device, "CUDA is not available on this machine; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        _fail("device", device, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        _fail("device", device, "MPS is not available on this machine; use device='cpu'")
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
    K, n = check_logit_shape(Z, name)
    check_finite(name, Z)
    return K, n


def check_logit_shape(Z: torch.Tensor, name: str = "Z") -> tuple[int, int]:
    """Shape and dtype part of ``check_logits`` for (..., K, K*n) logits (no data access, so
    cheap inside autograd and batched code); return (K, n)."""
    if not isinstance(Z, torch.Tensor) or Z.dim() < 2:
        _fail(name, getattr(Z, "shape", Z), "must be a tensor of shape (..., K, K*n)")
    if Z.is_complex() or Z.dtype == torch.bool:
        _fail(f"{name}.dtype", Z.dtype, "must be a real floating-point or integer dtype")
    K, N = Z.shape[-2:]
    check_int(f"{name}.shape[-2] (K)", K, 2)
    if N % K != 0 or N == 0:
        _fail(f"{name}.shape", tuple(Z.shape), "the column count must be a positive multiple of K")
    return K, N // K


def check_finite(name: str, T: torch.Tensor) -> torch.Tensor:
    """Check that a real tensor holds no NaN or infinite entry (names the count and the first)."""
    if T.is_complex():
        _fail(f"{name}.dtype", T.dtype, "must be a real dtype (complex values are not allowed)")
    # A finite sum means finite entries (one pass, nothing allocated: a paper-scale starting
    # point is tens of MB); a sum that overflowed is checked entry by entry.
    if T.is_floating_point() and not bool(torch.isfinite(T.sum())):
        bad = ~torch.isfinite(T)
        count = int(bad.sum())
        if count:
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} is not allowed: {count} of its {T.numel()} entries are NaN or infinite "
                f"(first at index {where}: {float(T[where])}); all entries must be finite"
            )
    return T


def check_params(params: object, name: str = "params") -> list:
    """Check deep-UFM parameters [H_1, W_1, ..., W_L] (Eq. (1)): L >= 1, real finite tensors whose
    shapes chain, H_1 (d_1, N), W_l (d_{l+1}, d_l), with optional equal leading batch dimensions.
    Returns them as a list. Used by ``losses.full_loss`` and the metrics of a parameter list."""
    if isinstance(params, torch.Tensor) or not isinstance(params, Sequence):
        _fail(name, type(params).__name__, "must be a list [H_1, W_1, ..., W_L] of tensors")
    params = list(params)
    if len(params) < 2:
        _fail(f"len({name})", len(params), "need [H_1, W_1, ..., W_L] with L >= 1")
    for j, P in enumerate(params):
        if not isinstance(P, torch.Tensor) or P.dim() < 2:
            _fail(f"{name}[{j}]", getattr(P, "shape", P), "must be a tensor with >= 2 dimensions")
        check_finite(f"{name}[{j}]", P)
    for j in range(1, len(params)):
        prev, P = params[j - 1].shape, params[j].shape
        if P[:-2] != prev[:-2] or P[-1] != prev[-2]:
            raise ValueError(
                f"{name}[{j}].shape={tuple(P)} is not allowed after {name}[{j - 1}].shape="
                f"{tuple(prev)}: W_{j} must have {prev[-2]} columns (the rows of the matrix "
                "before it) and the same leading dimensions"
            )
    return params
