"""The one place a device mesh is built from config: axes ``(data, fsdp, tensor)``.

``data`` replicates parameters and splits the batch; ``fsdp`` splits the batch AND shards parameters
(ZeRO-3 style, gathered per layer by XLA); ``tensor`` shards the model dimension (heads / mlp).
The batch axis is therefore sharded over ``("data", "fsdp")`` and the data-parallel size is
``data * fsdp``. Exactly one axis may be ``-1``: it takes all devices left over.

Mesh axes are ``AxisType.Auto`` (GSPMD propagation): the train step pins in/out shardings and XLA
chooses the rest, which is what the logical-axis rules of ``nnx_models.sharding`` are written for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """Resolves ``{data, fsdp, tensor}`` (one may be -1) against ``num_devices``; validates."""
    sizes = []
    for name in AXES:
        v = mesh_cfg.get(name, 1)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or (v < 1 and v != -1):
            raise ValueError(f"config.mesh.{name}={v!r} is invalid; allowed a positive int or -1 "
                             "(-1 = all remaining devices).")
        sizes.append(int(v))
    unknown = [n for n in mesh_cfg if n not in AXES]
    if unknown:
        raise ValueError(f"config.mesh has unknown axes {unknown}; allowed {AXES}.")
    if sizes.count(-1) > 1:
        raise ValueError(f"config.mesh={dict(zip(AXES, sizes, strict=True))}: at most one axis "
                         "may be -1.")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % fixed:
            raise ValueError(
                f"config.mesh={dict(zip(AXES, sizes, strict=True))}: {num_devices} devices are not "
                f"divisible by the fixed axes' product {fixed}; choose sizes that divide "
                f"{num_devices}.")
        sizes[sizes.index(-1)] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"config.mesh={dict(zip(AXES, sizes, strict=True))} needs {fixed} devices but "
            f"{num_devices} are available; make data*fsdp*tensor == {num_devices} or set one "
            "axis to -1.")
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    return int(mesh.shape["data"] * mesh.shape["fsdp"])


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "config.train.batch_size") -> None:
    """The global batch must split evenly over the data-parallel axes and over processes."""
    dp = data_parallel_size(mesh)
    if batch_size < 1 or batch_size % dp:
        raise ValueError(
            f"{field}={batch_size} is not divisible by the data-parallel size {dp} "
            f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}); use a positive "
            f"multiple of {dp}.")
    if batch_size % jax.process_count():
        raise ValueError(f"{field}={batch_size} is not divisible by the process count "
                         f"{jax.process_count()}.")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """[K, B, ...] stacks of batches (several updates per dispatch): the step axis replicated,
    the batch axis as in ``batch_sharding``."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def describe(mesh: Mesh) -> str:
    return " x ".join(f"{n}={mesh.shape[n]}" for n in AXES) + f" ({mesh.devices.size} devices)"
