"""The machine's cores are shared: every test here runs torch on one thread."""

import torch

torch.set_num_threads(1)
