"""A small character-level transformer, trained on a fixed number of tokens.

This is the file the experiments change. Tune the constants below (or anything else);
prepare.py is the fixed evaluator and may not be changed. Every run trains on the same number
of tokens (prepare.TRAIN_TOKENS), so results do not depend on the machine's speed or load; the
time budget (AUTORESEARCH_TIME_BUDGET) only stops a run that is far too slow.
"""

import math
import os
import resource
import sys
import time

import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prepare import TRAIN_TOKENS, VOCAB_SIZE, evaluate_bpb, load_data  # noqa: E402

# ---------------------------------------------------------------- the knobs
LEARNING_RATE = 0.001
BATCH_SIZE = 32
SEQ_LEN = 64
N_LAYER = 2
N_HEAD = 4
N_EMBD = 64
DROPOUT = 0.0
WEIGHT_DECAY = 0.1
WARMUP_STEPS = 10
GRAD_CLIP = 1.0
ACTIVATION = "gelu"  # one of: relu, gelu, silu
TIED_EMBEDDINGS = False
SEED = 1337

TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "60"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(N_EMBD)
        self.attn = nn.MultiheadAttention(N_EMBD, N_HEAD, dropout=DROPOUT, batch_first=True)
        self.ln2 = nn.LayerNorm(N_EMBD)
        self.fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.proj = nn.Linear(4 * N_EMBD, N_EMBD)
        self.drop = nn.Dropout(DROPOUT)
        self.act = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[ACTIVATION]

    def forward(self, x, mask):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + self.drop(a)
        x = x + self.drop(self.proj(self.act(self.fc(self.ln2(x)))))
        return x


class CharLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB_SIZE, N_EMBD)
        self.pos = nn.Embedding(SEQ_LEN, N_EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln = nn.LayerNorm(N_EMBD)
        self.head = nn.Linear(N_EMBD, VOCAB_SIZE, bias=False)
        if TIED_EMBEDDINGS:
            self.head.weight = self.tok.weight

    def forward(self, idx):
        t = idx.shape[1]
        mask = torch.triu(torch.full((t, t), float("-inf"), device=idx.device), diagonal=1)
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for b in self.blocks:
            x = b(x, mask)
        return self.head(self.ln(x))


def main():
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    train_data, val_data = load_data()
    model = CharLM().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(SEED)
    total_steps = max(1, TRAIN_TOKENS // (BATCH_SIZE * SEQ_LEN))

    t0 = time.time()
    step = 0
    loss_ema = None
    while step < total_steps:
        elapsed = time.time() - t0
        if elapsed >= TIME_BUDGET:
            break  # far too slow for this machine: stop short (the result will show it)
        # warmup, then cosine decay over the run's steps
        lr = LEARNING_RATE * min(1.0, (step + 1) / max(1, WARMUP_STEPS)) * 0.5 * (1 + math.cos(math.pi * step / total_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(0, len(train_data) - SEQ_LEN - 1, (BATCH_SIZE,), generator=gen)
        x = torch.stack([train_data[i : i + SEQ_LEN] for i in ix]).to(device)
        y = torch.stack([train_data[i + 1 : i + SEQ_LEN + 1] for i in ix]).to(device)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, VOCAB_SIZE), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        if step % 10 == 0:
            print(f"step {step:5d}/{total_steps} | loss {loss_ema:.4f} | lr {lr:.2e} | {elapsed:5.1f}s (stop at {TIME_BUDGET:.0f}s)",
                  end="\r", flush=True)
    training_seconds = time.time() - t0
    print()

    val_bpb = evaluate_bpb(model, val_data, SEQ_LEN, device)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 1024**2
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - T_START:.1f}")
    print(f"peak_vram_mb:     {peak_mb:.1f}")
    print(f"num_steps:        {step}")
    print(f"planned_steps:    {total_steps}")
    print(f"train_tokens:     {step * BATCH_SIZE * SEQ_LEN}")
    print(f"num_params_M:     {n_params / 1e6:.3f}")
    print(f"device:           {device}")


T_START = time.time()
if __name__ == "__main__":
    sys.exit(main())
