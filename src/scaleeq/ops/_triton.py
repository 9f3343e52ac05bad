"""Fused Triton kernels for the kriging aggregation (forward and backward).

Imported lazily (only when the ``triton`` backend is used), so the library imports and runs
without Triton. On CUDA tensors the kernels run natively; on CPU tensors they run only under
Triton's interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is imported), which is how
the test suite checks them without a GPU.

Kernels (``K*R`` is always formed in registers; neither it nor the unfolded input is written):

- ``_gather_kernel``: ``out[b,c,p] = sum_j w_j(s) v[b,c,s]`` over the taps ``j``, with
  ``s = p + o_j`` and ``w_j = K[b,g(c),j,p] R[b,j,p]`` (forward: ``v = x``), or
  ``s = p - o_j`` and ``w_j = K[b,g(c),j,s] R[b,j,s]`` (input gradient: ``v = dy``; a gather,
  no atomics).
- ``_kernel_grad_kernel``: ``t[b,g,j,p] = sum_{c in g} dy[b,c,p] x[b,c,p+o_j]``, written as
  ``dK = t R`` and ``t K`` (summed over groups on the host to give ``dR``).

All index arithmetic is int64; accumulation is float32 for fp32/fp16/bf16 inputs (float64 for
float64 inputs, so gradcheck works); outputs have the input dtype.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["aggregate_triton_backward", "aggregate_triton_forward", "interpreting"]


def interpreting() -> bool:
    """True when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _blocks(cg: int, hw: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_P): a channel tile covering the group, pixel tiles of 128 on GPU.

    The interpreter costs a few ms per program instance, so it gets the largest tiles.
    """
    block_c = min(triton.next_power_of_2(max(cg, 1)), 32)
    if interpreting():
        block_p = min(triton.next_power_of_2(hw), 4096)
    else:
        block_p = max(16, min(128, 4096 // block_c))
    return block_c, block_p


@triton.jit
def _gather_kernel(
    v_ptr, k_ptr, r_ptr, out_ptr,
    H, W, G, CG, n_cblocks,
    svb, svc, svh, svw,
    skb, skg, skj, skh, skw,
    srb, srj, srh, srw,
    sob, soc, soh, sow,
    HAS_R: tl.constexpr, KS: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid0 = tl.program_id(0).to(tl.int64)  # over B * G * n_cblocks
    pid1 = tl.program_id(1).to(tl.int64)  # over pixel blocks
    cb = pid0 % n_cblocks
    bg = pid0 // n_cblocks
    g = bg % G
    b = bg // G
    offs_p = pid1 * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    mask_p = offs_p < H * W
    ph = offs_p // W
    pw = offs_p % W
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    mask_c = offs_c < CG
    ch = g * CG + offs_c
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    PAD: tl.constexpr = KS // 2
    for j in tl.static_range(KS * KS):
        oy = j // KS - PAD
        ox = j % KS - PAD
        if REVERSE:
            sh = ph - oy
            sw = pw - ox
        else:
            sh = ph + oy
            sw = pw + ox
        inside = mask_p & (sh >= 0) & (sh < H) & (sw >= 0) & (sw < W)
        if REVERSE:  # the weight of tap j sits at the source pixel
            wh = sh
            ww = sw
        else:
            wh = ph
            ww = pw
        wgt = tl.load(
            k_ptr + b * skb + g * skg + j * skj + wh * skh + ww * skw, mask=inside, other=0.0
        ).to(ACC)
        if HAS_R:
            wgt = wgt * tl.load(
                r_ptr + b * srb + j * srj + wh * srh + ww * srw, mask=inside, other=0.0
            ).to(ACC)
        v_off = b * svb + ch[:, None] * svc + sh[None, :] * svh + sw[None, :] * svw
        v = tl.load(v_ptr + v_off, mask=mask_c[:, None] & inside[None, :], other=0.0).to(ACC)
        acc += v * wgt[None, :]
    o_off = b * sob + ch[:, None] * soc + ph[None, :] * soh + pw[None, :] * sow
    tl.store(
        out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask_c[:, None] & mask_p[None, :]
    )


@triton.jit
def _kernel_grad_kernel(
    gy_ptr, x_ptr, k_ptr, r_ptr, dk_ptr, tk_ptr,
    H, W, G, CG,
    sgb, sgc, sgh, sgw,
    sxb, sxc, sxh, sxw,
    skb, skg, skj, skh, skw,
    srb, srj, srh, srw,
    HAS_R: tl.constexpr, NEED_TK: tl.constexpr, KS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    # dk and tk are contiguous (B, G, KS*KS, H, W), with the strides of k's contiguous layout.
    bg = tl.program_id(0).to(tl.int64)  # over B * G
    pid1 = tl.program_id(1).to(tl.int64)
    g = bg % G
    b = bg // G
    offs_p = pid1 * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    mask_p = offs_p < H * W
    ph = offs_p // W
    pw = offs_p % W
    KK: tl.constexpr = KS * KS
    PAD: tl.constexpr = KS // 2
    out_base = bg * KK * H * W
    for j in tl.static_range(KK):
        oy = j // KS - PAD
        ox = j % KS - PAD
        sh = ph + oy
        sw = pw + ox
        inside = mask_p & (sh >= 0) & (sh < H) & (sw >= 0) & (sw < W)
        t = tl.zeros((BLOCK_P,), dtype=ACC)
        for c0 in range(0, CG, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            mask_c = offs_c < CG
            ch = g * CG + offs_c
            gy = tl.load(
                gy_ptr + b * sgb + ch[:, None] * sgc + ph[None, :] * sgh + pw[None, :] * sgw,
                mask=mask_c[:, None] & mask_p[None, :], other=0.0,
            ).to(ACC)  # fmt: skip
            xs = tl.load(
                x_ptr + b * sxb + ch[:, None] * sxc + sh[None, :] * sxh + sw[None, :] * sxw,
                mask=mask_c[:, None] & inside[None, :], other=0.0,
            ).to(ACC)  # fmt: skip
            t += tl.sum(gy * xs, axis=0)
        out_off = out_base + j * H * W + offs_p
        if HAS_R:
            r = tl.load(r_ptr + b * srb + j * srj + ph * srh + pw * srw, mask=mask_p, other=0.0).to(
                ACC
            )
            tl.store(dk_ptr + out_off, (t * r).to(dk_ptr.dtype.element_ty), mask=mask_p)
        else:
            tl.store(dk_ptr + out_off, t.to(dk_ptr.dtype.element_ty), mask=mask_p)
        if NEED_TK:
            kv = tl.load(
                k_ptr + b * skb + g * skg + j * skj + ph * skh + pw * skw, mask=mask_p, other=0.0
            ).to(ACC)
            tl.store(tk_ptr + out_off, (t * kv).to(tk_ptr.dtype.element_ty), mask=mask_p)


def _acc(dtype: torch.dtype):
    """Accumulation dtype: float64 for float64 inputs (gradcheck), else float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def _r_args(dist: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    if dist is None:
        return like, (0, 0, 0, 0)
    return dist, tuple(dist.stride())


def _gather(
    v: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None, reverse: bool
) -> torch.Tensor:
    b, c, h, w = v.shape
    g, kk = kernel.shape[1], kernel.shape[2]
    ks = round(kk**0.5)
    cg = c // g
    out = torch.empty((b, c, h, w), device=v.device, dtype=v.dtype)
    block_c, block_p = _blocks(cg, h * w)
    n_cblocks = triton.cdiv(cg, block_c)
    r, r_strides = _r_args(dist, kernel)
    grid = (b * g * n_cblocks, triton.cdiv(h * w, block_p))
    _gather_kernel[grid](
        v, kernel, r, out,
        h, w, g, cg, n_cblocks,
        *v.stride(), *kernel.stride(), *r_strides, *out.stride(),
        HAS_R=dist is not None, KS=ks, REVERSE=reverse, BLOCK_C=block_c, BLOCK_P=block_p,
        ACC=_acc(v.dtype),
    )  # fmt: skip
    return out


def aggregate_triton_forward(
    x: torch.Tensor, kernel: torch.Tensor, dist: torch.Tensor | None
) -> torch.Tensor:
    """Forward of the aggregation; same contract as the reference."""
    return _gather(x, kernel, dist, reverse=False)


def aggregate_triton_backward(
    gy: torch.Tensor,
    x: torch.Tensor,
    kernel: torch.Tensor,
    dist: torch.Tensor | None,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dx, dkernel, ddist)`` for the needed inputs (others ``None``)."""
    need_x, need_k, need_d = needs
    need_d = need_d and dist is not None
    dx = _gather(gy, kernel, dist, reverse=True) if need_x else None
    dk = dd = None
    if need_k or need_d:
        b, c, h, w = x.shape
        g, kk = kernel.shape[1], kernel.shape[2]
        ks = round(kk**0.5)
        cg = c // g
        dk_buf = torch.empty((b, g, kk, h, w), device=x.device, dtype=kernel.dtype)
        tk_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        tk = torch.empty((b, g, kk, h, w), device=x.device, dtype=tk_dtype) if need_d else dk_buf
        block_c, block_p = _blocks(cg, h * w)
        r, r_strides = _r_args(dist, kernel)
        grid = (b * g, triton.cdiv(h * w, block_p))
        _kernel_grad_kernel[grid](
            gy, x, kernel, r, dk_buf, tk,
            h, w, g, cg,
            *gy.stride(), *x.stride(), *kernel.stride(), *r_strides,
            HAS_R=dist is not None, NEED_TK=need_d, KS=ks, BLOCK_C=block_c, BLOCK_P=block_p,
            ACC=_acc(x.dtype),
        )  # fmt: skip
        dk = dk_buf if need_k else None
        if need_d:
            assert dist is not None
            dd = tk.sum(dim=1).to(dist.dtype)
    return dx, dk, dd
