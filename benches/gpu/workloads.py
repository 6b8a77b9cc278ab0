"""The three PyTorch workloads compare.py runs, each as ``make(name, batch, device)``
returning a zero-argument ``step()``.

They are chosen to stress an allocator differently: GPT training with shapes that change
every step (fragmentation across sizes), ResNet-50 training (the same shapes every step:
the caching allocator's best case), and autoregressive generation whose KV cache grows
by torch.cat each token (a new, slightly larger block every step).
"""

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 8192
GPT_MAX_LEN = 2048
# (width, layers, heads): the measured model (GPT-2 small's shape) and the one the CPU
# smoke test (python/tests/test_gpu_workloads.py) runs the same code with.
GPT_SIZES = {"full": (768, 12, 12), "tiny": (64, 2, 4)}
RESNET_IMAGE = {"full": 224, "tiny": 32}
# (sequence length, share of the base batch): tokens per step vary between 0.5x and 1x.
GPT_SCHEDULE = ((512, 1.0), (1024, 0.5), (128, 4.0), (768, 0.5), (256, 2.0), (2048, 0.125), (384, 1.0), (64, 8.0))
GEN_PROMPTS = (64, 256, 128)
GEN_NEW_TOKENS = 512


class Block(nn.Module):
    """Pre-norm transformer block; with ``cache`` it appends this call's keys/values."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, 2))
        if cache is not None:
            k = torch.cat([cache[0], k], 2)
            v = torch.cat([cache[1], v], 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x)), (k, v)


class GPT(nn.Module):
    def __init__(self, size="full"):
        super().__init__()
        dim, layers, heads = GPT_SIZES[size]
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(GPT_MAX_LEN, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB, bias=False)

    def forward(self, idx, caches=None, start=0):
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if caches is None else caches[i])
            new.append(kv)
        return self.head(self.ln(x)), new


def gpt_train(batch, device, size):
    """One training step per call; shapes follow GPT_SCHEDULE with ``batch`` at 512 tokens."""
    model = GPT(size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shapes = itertools.cycle(GPT_SCHEDULE)

    def step():
        seq, share = next(shapes)
        b = max(1, int(batch * share))
        idx = torch.randint(0, VOCAB, (b, seq + 1), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits, _ = model(idx[:, :-1])
            loss = F.cross_entropy(logits.float().view(-1, VOCAB), idx[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, len(GPT_SCHEDULE)


def resnet50_train(batch, device, size):
    """One SGD step of torchvision's ResNet-50 on random 224x224 images per call."""
    import torchvision  # the caller checks it is installed

    model = torchvision.models.resnet50(weights=None).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step():
        side = RESNET_IMAGE[size]
        x = torch.randn(batch, 3, side, side, device=device).to(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, 2


def generate(batch, device, size):
    """One decoded token per call; a new sequence (next prompt length) every GEN_NEW_TOKENS."""
    model = GPT(size).to(device).eval().to(torch.bfloat16)
    prompts = itertools.cycle(GEN_PROMPTS)
    state = {"left": 0}

    @torch.no_grad()
    def step():
        if state["left"] == 0:
            state.clear()
            prompt = torch.randint(0, VOCAB, (batch, next(prompts)), device=device)
            logits, state["caches"] = model(prompt)
            state.update(pos=prompt.shape[1], left=GEN_NEW_TOKENS, last=logits[:, -1:].argmax(-1))
        logits, state["caches"] = model(state["last"], state["caches"], state["pos"])
        state["last"] = logits[:, -1:].argmax(-1)
        state["pos"] += 1
        state["left"] -= 1

    # Probing for OOM must reach the longest cache: one whole generation of the longest prompt.
    return step, GEN_NEW_TOKENS * len(GEN_PROMPTS)


WORKLOADS = {"gpt": (gpt_train, 16), "resnet50": (resnet50_train, 64), "generate": (generate, 32)}


def make(name, batch, device, size="full"):
    """(step, steps needed to touch every shape) for workload ``name`` at ``batch``;
    ``size="tiny"`` shrinks the models so that the same code runs quickly on a CPU."""
    return WORKLOADS[name][0](batch, device, size)
