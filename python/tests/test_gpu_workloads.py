"""benches/gpu/workloads.py on the CPU with real PyTorch and the tiny model sizes: the
benchmark's model code, shape schedule and growing KV cache run before a GPU session
spends its time on them. Skipped, saying why, without PyTorch (resnet50 without
torchvision)."""

import pytest

from conftest import REPO, run_json, run_py

GPU_BENCH = REPO / "benches" / "gpu"


@pytest.fixture(scope="module")
def torch_present():
    if run_py("import torch", [], check=False).returncode != 0:
        pytest.skip("PyTorch is not installed (pip install torch)")


@pytest.mark.parametrize("workload,steps", [("gpt", 8), ("generate", 520), ("resnet50", 2)])
def test_workload_runs_tiny_on_cpu(torch_present, workload, steps):
    if workload == "resnet50" and run_py("import torchvision", [], check=False).returncode != 0:
        pytest.skip("torchvision is not installed")
    got = run_json(f"""
        import json, torch, workloads
        torch.manual_seed(0)
        step, cover = workloads.make({workload!r}, 2, torch.device("cpu"), size="tiny")
        for _ in range({steps}):
            step()
        print(json.dumps(cover))
    """, [GPU_BENCH])
    # Every shape is reached within `cover` steps: the schedule for gpt, one generation
    # per prompt length for generate (520 steps cross the first prompt's 512 new tokens).
    assert got == {"gpt": 8, "generate": 512 * 3, "resnet50": 2}[workload]
