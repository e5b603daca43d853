import os

# One intra-op thread for the tests and the commands they start. The test models are tiny:
# a second thread buys nothing, and on a busy 2-core machine (CI) OpenMP's two threads wait
# on each other whenever one is descheduled, which made tiny-model tests up to 25x slower.
# It also takes thread scheduling out of every float sum the bit-exact tests compare.
# Set before torch is imported, so this process and every subprocess start with it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Triton's interpreter must be switched on before any @triton.jit decorator runs, so it
# is set here, before test modules import `kernels`. On a CUDA machine the real kernels run.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
