"""Fake torch.version: a CUDA build unless FAKE_TORCH_NO_CUDA is set."""

import os

cuda = None if os.environ.get("FAKE_TORCH_NO_CUDA") else "12.4"
