"""Kernels: Triton versions and PyTorch references (see kernels/dispatch.py)."""
