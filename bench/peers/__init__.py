"""Peers for bench/bench_peers.py: each turns one dense model into one model per latency budget.

Nothing in maestro_edge/ imports this folder: Torch-Pruning and AIMET are benchmark dependencies only.
"""
