"""Logical-axis -> mesh-axis rules (the one table), kept outside the model code.

Parameters carry logical names (``out_sharding`` metadata set in ``nnx_models.layers``); activations
use ``batch`` / ``length``. The mesh has axes ``(data, fsdp, tensor)`` (``train/mesh.py``):

=========  =================  ===================================================================
logical    mesh               why
=========  =================  ===================================================================
batch      (data, fsdp)       data parallel over both axes
embed      fsdp               ZeRO-3: every weight matrix has one ``embed`` dim, sharded over fsdp
vocab      tensor             Megatron-style vocab-parallel embedding / LM head
mlp        tensor             column-parallel up/gate, row-parallel down
heads      tensor             attention heads split across tensor devices
kv_heads   tensor             (replicate instead when num_kv_heads < tensor; see ``fit_spec``)
head_dim   None               never split inside a head
layers     None               the scanned layer axis stays whole (each step reads one layer)
norm       None               vectors are tiny
length     None               no sequence parallelism (states are 16-120 tokens)
=========  =================  ===================================================================

Use either flax's context (``with nnx.logical_axis_rules(LOGICAL_RULES): nnx.get_partition_spec``)
or the explicit helpers below.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    ("length", None),
)


def logical_specs(tree) -> object:
    """Logical PartitionSpecs (e.g. ``P('embed', 'mlp')``) of a module or ``nnx.State``."""
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree)
    return nnx.get_partition_spec(state)


def logical_to_mesh(specs, rules=LOGICAL_RULES):
    """Map a pytree of logical PartitionSpecs to mesh PartitionSpecs with ``rules``.

    Raises ValueError naming any logical axis that the rules do not mention (a typo would otherwise
    be taken for a mesh axis name).
    """
    table = dict(rules)

    def one(spec):
        out = []
        for name in spec:
            if name is None:
                out.append(None)
            elif isinstance(name, str) and name in table:
                out.append(table[name])
            else:
                raise ValueError(f"logical axis {name!r} has no rule; known: {sorted(table)}.")
        return PartitionSpec(*out)

    return jax.tree.map(one, specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def fit_spec(shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh) -> PartitionSpec:
    """Drop mesh axes that do not divide their dimension (that dimension is replicated instead)."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        kept, size = [], 1
        for a in names:
            if dim % (size * mesh.shape[a]) == 0:
                kept.append(a)
                size *= mesh.shape[a]
        out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*out)


def mesh_shardings(tree, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for every variable of a module / (abstract) ``nnx.State``."""
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree)
    specs = logical_to_mesh(logical_specs(state), rules)
    return jax.tree.map(lambda x, p: NamedSharding(mesh, fit_spec(x.shape, p, mesh)), state, specs)


def init_sharded(make_model, mesh: Mesh, rules=LOGICAL_RULES):
    """Build ``make_model()`` with every parameter created directly in its shard.

    ``eval_shape`` gives the abstract state, the rules give its shardings, and one jitted init with
    those ``out_shardings`` materialises it, so no host ever holds the full model. Returns the
    model.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abs_state = nnx.split(abstract)
    shardings = mesh_shardings(abs_state, mesh, rules)
    state = jax.jit(lambda: nnx.state(make_model()), out_shardings=shardings)()
    return nnx.merge(graphdef, state)
