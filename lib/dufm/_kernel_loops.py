"""The numba-compiled loop behind ``dufm.kernels`` (imported only where numba is installed).

``linear_steps`` is ``dufm._engine._linear_step`` (same products, same order, same updates)
for one block, one run at a time, ``n`` steps each, each product an MKL JIT kernel called
through its address.
Compiled once per dtype and cached next to this file (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def _gemm(typingctx, address, handle, a, b, c):
    """Call the MKL JIT kernel at ``address``: kernel(handle, a, b, c), all addresses."""
    sig = types.void(types.int64, types.int64, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        void_p = ir.IntType(8).as_pointer()
        fn = ir.FunctionType(ir.VoidType(), [void_p] * 4)
        kernel = builder.inttoptr(args[0], fn.as_pointer())
        builder.call(kernel, [builder.inttoptr(x, void_p) for x in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _vector_exp(typingctx, address, n, a, y, mode):
    """Call MKL's v?Exp(n, a, y, mode) at ``address``: y = exp(a) elementwise (n 32-bit)."""
    sig = types.void(types.int64, types.int32, types.intp, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        void_p = ir.IntType(8).as_pointer()
        fn = ir.FunctionType(ir.VoidType(), [ir.IntType(32), void_p, void_p, ir.IntType(64)])
        exp = builder.inttoptr(args[0], fn.as_pointer())
        builder.call(
            exp,
            [
                args[1],
                builder.inttoptr(args[2], void_p),
                builder.inttoptr(args[3], void_p),
                args[4],
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def _softmax_gradient(Z, G, col, coef, Y, exp, mode, low):
    """G = coef * softmax(Z over K) - coef * Y, as the torch step computes it.

    Exponents below ``low`` (where exp falls below the smallest normal float) are raised to it:
    MKL's exp takes a slow path on underflow (about 400x slower per entry), and the entries so
    changed are below 1e-37 of the column's largest (1), which the flushed update rounds away.
    """
    K, N = Z.shape
    top, total = col[0], col[1]
    for j in range(N):
        top[j] = Z[0, j]
    for k in range(1, K):
        for j in range(N):
            top[j] = max(top[j], Z[k, j])
    for k in range(K):
        for j in range(N):
            G[k, j] = max(Z[k, j] - top[j], low)
    _vector_exp(exp, np.int32(K * N), G.ctypes.data, G.ctypes.data, np.int64(mode))
    for j in range(N):
        total[j] = G[0, j]
    for k in range(1, K):
        for j in range(N):
            total[j] += G[k, j]
    for j in range(N):
        total[j] = 1.0 / total[j]
    for k in range(K):
        for j in range(N):
            G[k, j] = -coef * Y[k, j] + coef * (G[k, j] * total[j])


@numba.njit(nogil=True, cache=True)
def linear_steps(
    addr, stride, WL, fixed, update, coef, decay, Y, A, B, Z, G, col, exp, mode, low, L, n
):
    """``n`` GD steps of every run of the block (``dufm._engine._linear_step``, per run).

    The runs are independent, so each run takes its ``n`` steps in turn while its matrices stay
    in the core's cache. ``addr``/``stride``: base address and bytes per run of H_1, W_1, ...,
    W_L; ``fixed``: the (address, handle) pairs of the kernels A_l = A_{l+1} W_l, Z = A_1 H_1,
    B_1 = G H_1^T, B_{l+1} = B_l W_l^T; ``update[r]``: run r's H_1 += A_1^T G and
    W_l += A_{l+1}^T B_l kernels (beta = its decay); ``A``, ``B``, ``Z``, ``G``, ``col``: one
    run's workspace.
    """
    for r in range(WL.shape[0]):
        for _ in range(n):
            _linear_step(
                addr,
                stride,
                WL,
                fixed,
                update,
                coef,
                decay,
                Y,
                A,
                B,
                Z,
                G,
                col,
                exp,
                mode,
                low,
                L,
                r,
            )


@numba.njit(nogil=True, cache=True)
def _linear_step(
    addr, stride, WL, fixed, update, coef, decay, Y, A, B, Z, G, col, exp, mode, low, L, r
):
    """One GD step of run r (the products and updates of ``dufm._engine._linear_step``)."""
    H = addr[0] + r * stride[0]
    top = addr[L] + r * stride[L]  # W_L = A_L
    for layer in range(L - 1, 0, -1):
        left = top if layer == L - 1 else A[layer].ctypes.data
        W = addr[layer] + r * stride[layer]
        _gemm(fixed[0], fixed[1], left, W, A[layer - 1].ctypes.data)
    A1 = top if L == 1 else A[0].ctypes.data
    _gemm(fixed[2], fixed[3], A1, H, Z.ctypes.data)
    _softmax_gradient(Z, G, col, coef[r], Y, exp, mode, low)
    _gemm(fixed[4], fixed[5], G.ctypes.data, H, B[0].ctypes.data)
    for layer in range(1, L):
        W = addr[layer] + r * stride[layer]
        _gemm(fixed[6], fixed[7], B[layer - 1].ctypes.data, W, B[layer].ctypes.data)
    _gemm(update[r, 0], update[r, 1], A1, G.ctypes.data, H)
    for layer in range(1, L):  # W_L (= A_L) is read here and updated last
        left = top if layer == L - 1 else A[layer].ctypes.data
        W = addr[layer] + r * stride[layer]
        _gemm(update[r, 2], update[r, 3], left, B[layer - 1].ctypes.data, W)
    last, beta = WL[r], decay[r]
    for k in range(last.shape[0]):
        for j in range(last.shape[1]):
            last[k, j] = beta * last[k, j] + B[L - 1, k, j]
