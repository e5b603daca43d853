"""Choosing between a kernel's Triton version and its PyTorch reference.

Every public kernel in this package has two implementations with the same signature:
a pure-PyTorch reference (the test oracle and the CPU path) and a Triton kernel (the
CUDA path). `use_triton` is the one place that decides which one runs:

- ``RFTT_KERNELS=reference`` forces the reference everywhere;
- ``RFTT_KERNELS=triton`` forces Triton; together with ``TRITON_INTERPRET=1`` this runs
  the Triton kernels on CPU tensors through Triton's interpreter (how CPU tests and CI
  exercise them);
- unset (``auto``): Triton for CUDA tensors, the reference otherwise.
"""

from __future__ import annotations

import os

import torch

_MODES = ("auto", "reference", "triton")


def kernel_mode() -> str:
    mode = os.environ.get("RFTT_KERNELS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"RFTT_KERNELS={mode!r}: expected one of {', '.join(_MODES)}")
    return mode


def use_triton(t: torch.Tensor) -> bool:
    """True when the kernel called on tensor `t` should run its Triton version."""
    mode = kernel_mode()
    if mode == "reference":
        return False
    if mode == "triton":
        if not t.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                "RFTT_KERNELS=triton on CPU tensors needs TRITON_INTERPRET=1 "
                "(set before the kernels are imported)"
            )
        return True
    return t.is_cuda
