"""The fixed evaluator of the demo: data, split, training budget and evaluation. Never edited by
experiments.

The corpus ships with the package (corpus.txt); bytes are the vocabulary (256 symbols), so
the loss in bits is directly bits per byte. The split is fixed: the last 10% is validation.
"""

import math
import os

import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

VOCAB_SIZE = 256
EVAL_MAX_CONTEXT = 128
# The fixed training budget: every experiment trains on this many tokens (bytes), whatever its
# batch or context, so that a result does not depend on how fast or how busy the machine is.
TRAIN_TOKENS = 1_200_000
HERE = os.path.dirname(os.path.abspath(__file__))


def load_data():
    with open(os.path.join(HERE, "corpus.txt"), "rb") as f:
        data = torch.tensor(list(f.read()), dtype=torch.long)
    n = int(len(data) * 0.9)
    return data[:n], data[n:]


@torch.no_grad()
def evaluate_bpb(model, val_data, context, device="cpu"):
    """Mean bits per byte of `model` on the whole validation text.

    The text is cut into consecutive windows of `context` bytes (at most EVAL_MAX_CONTEXT);
    every byte after the first is predicted once. `model(idx)` must return logits of shape
    (batch, time, VOCAB_SIZE).
    """
    was_training = model.training
    model.eval()
    context = max(2, min(int(context), EVAL_MAX_CONTEXT))
    total_nats, count = 0.0, 0
    for start in range(0, len(val_data) - 1, context):
        chunk = val_data[start : start + context + 1].to(device)
        if len(chunk) < 2:
            break
        x, y = chunk[:-1].unsqueeze(0), chunk[1:].unsqueeze(0)
        logits = model(x).float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, VOCAB_SIZE), y.view(-1), reduction="sum")
        total_nats += loss.item()
        count += y.numel()
    model.train(was_training)
    return total_nats / count / math.log(2)
