"""maestro-edge: one LoD-trained low-rank model, many devices, each under its own latency budget.

The public names below load lazily, so ``import maestro_edge`` stays cheap (no torch compile stack,
no executorch: importing the ExecuTorch runtime alone costs ~5 s).

    from maestro_edge import LoDCheckpoint, find_profile, Fitter
    fitter = Fitter(LoDCheckpoint.load("lod.pt"))
    record = fitter.fit(find_profile("pixel7"), 20.0, "out/pixel7-20ms")

Your own model: factorize_, train_lod (or LoDSchedule in your loop), importance_table(model, eval_fn,
example_inputs), LoDCheckpoint.from_model(...).save(path); README "Your own model".
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "LoDLinear": "maestro_edge.lod.layers",
    "LoDConv2d": "maestro_edge.lod.layers",
    "LoDLayer": "maestro_edge.lod.layers",
    "register_layer": "maestro_edge.lod.registry",
    "FactorizeConfig": "maestro_edge.lod.factorize",
    "factorize_": "maestro_edge.lod.factorize",
    "LoDCheckpoint": "maestro_edge.lod.checkpoint",
    "importance_table": "maestro_edge.lod.importance",
    "Recipe": "maestro_edge.train.loop",
    "LoDSchedule": "maestro_edge.train.lod_schedule",
    "train_lod": "maestro_edge.train.lod_schedule",
    "train_checkpoint": "maestro_edge.train.run",
    "recover": "maestro_edge.train.recover",
    "DeviceProfile": "maestro_edge.devices.profile",
    "find_profile": "maestro_edge.devices.profile",
    "register_transport": "maestro_edge.devices.transports",
    "Target": "maestro_edge.latency.target",
    "register_runtime": "maestro_edge.latency.runtimes",
    "LatencyTable": "maestro_edge.latency.table",
    "solve_ranks": "maestro_edge.solve",
    "RankPlan": "maestro_edge.solve",
    "truncate_": "maestro_edge.export.truncate",
    "ExportArtifact": "maestro_edge.export.artifact",
    "FitReport": "maestro_edge.export.fit_report",
    "Fitter": "maestro_edge.fit",
    "uniform_choices": "maestro_edge.fit",
    "MaestroError": "maestro_edge.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'maestro_edge' has no attribute {name!r}")
