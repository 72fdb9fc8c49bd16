"""A randomly initialised BERT-mini encoder (4 layers, hidden 256, seq 128) as a user checkpoint, for P1.

    python bench/make_bert_checkpoint.py /tmp/bert-mini.lod

Nobody here wrote or trained it: HF transformers' BertModel at BERT-mini's published size. The metric
is the mean cosine of mean-pooled embeddings to the unfactorized model's on 16 random sequences
(random weights: only latency is benchmarked with it).
"""

from __future__ import annotations

import sys
import time

import torch
import transformers

import maestro_edge as me


class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def main(out: str) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=1024)
    model = Encoder(transformers.BertModel(config, add_pooling_layer=False)).eval()
    ids = torch.randint(1000, 30000, (1, 128))
    mask = torch.ones(1, 128, dtype=torch.long)
    held = (torch.randint(1000, 30000, (16, 128)), torch.ones(16, 128, dtype=torch.long))
    with torch.no_grad():
        reference = model(*held).mean(1)

    def cosine(m):
        return float(torch.nn.functional.cosine_similarity(m(*held).mean(1), reference).mean())

    started = time.perf_counter()
    print(me.factorize_(model))
    table = me.importance_table(model, cosine, (ids, mask))
    me.LoDCheckpoint.from_model(model, (ids, mask), importance=table, name="bert-mini").save(out)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1])
