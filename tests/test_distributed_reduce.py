"""train.distributed's reductions: a CPU value (a token count, a metric) reduced under
either backend comes back on the CPU with the sum. NCCL only reduces CUDA tensors; before
the round trip through the GPU, train.ppo's metrics reduction failed on every NCCL run."""

import pytest
import torch
import torch.distributed as dist

from train.distributed import all_reduce_max, all_reduce_sum, sum_over_ranks


@pytest.fixture
def one_rank_group(request, tmp_path):
    backend = request.param
    dist.init_process_group(backend, store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1,
                            **({"device_id": torch.device("cuda", 0)} if backend == "nccl" else {}))
    yield backend
    dist.destroy_process_group()


def _check_cpu_values_round_trip():
    counts = torch.tensor([3.0, 4.5], dtype=torch.float64)
    total = all_reduce_sum(counts)
    assert total.device.type == "cpu" and total.tolist() == [3.0, 4.5]
    assert total is not counts  # a copy: the caller's tensor is not overwritten
    assert all_reduce_max(torch.tensor(7)).item() == 7
    assert sum_over_ranks({"reward": 1.5, "samples": 8}) == {"reward": 1.5, "samples": 8.0}


def test_reductions_without_a_process_group_are_copies():
    _check_cpu_values_round_trip()


@pytest.mark.parametrize("one_rank_group", ["gloo"], indirect=True)
def test_cpu_values_reduce_under_gloo(one_rank_group):
    _check_cpu_values_round_trip()


@pytest.mark.gpu
@pytest.mark.parametrize("one_rank_group", ["nccl"], indirect=True)
def test_cpu_values_reduce_under_nccl(one_rank_group):
    torch.cuda.set_device(0)
    _check_cpu_values_round_trip()
    on_gpu = all_reduce_sum(torch.ones(2, device="cuda"))
    assert on_gpu.device.type == "cuda" and on_gpu.tolist() == [1.0, 1.0]
