"""CPU proxies of a step's GPU cost: dispatched kernel ops, host syncs, bf16 casts, torch.compile graph breaks.

A GPU step of the size of ours is bound by kernel launches and host synchronisations, not by FLOPs, and neither
shows in CPU wall time.  Both can be counted on the CPU: every aten op that is not a view (a view launches no
kernel) is a kernel launch on a GPU, and the ops whose result the host must read (``.item()``, ``bool(t)``,
``nonzero``, ``unique``, ``masked_select``, ``equal``...) are the syncs.  ``_to_copy`` ops counted over a bf16
step are the per-call casts (autocast re-casting frozen weights shows up here).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops whose output the host reads (on a GPU each waits for the device)
SYNC_OPS = {
    "_local_scalar_dense",  # .item(), float(t), int(t), bool(t)
    "is_nonzero",
    "nonzero",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "masked_select",
    "equal",
    "allclose",
    "repeat_interleave",  # without output_size its length is read back
}
# ops that move no data or only alias: no kernel on a GPU
FREE_OPS = {"_unsafe_view", "detach", "alias", "lift_fresh", "empty", "empty_strided", "empty_like", "set_", "resize_"}


@dataclass
class OpCounts:
    """What one call dispatched: kernel ops (non-view), host syncs, ``_to_copy`` casts, per op name."""

    ops: int = 0
    syncs: int = 0
    casts: int = 0
    by_op: Counter = field(default_factory=Counter)
    sync_ops: Counter = field(default_factory=Counter)


class CountOps(TorchDispatchMode):
    """Counts the aten ops dispatched while active (backward kernels included: autograd dispatches them too)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = OpCounts()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        out = func(*args, **(kwargs or {}))
        if func.is_view or name in FREE_OPS:
            return out
        c = self.counts
        c.ops += 1
        c.by_op[name] += 1
        if name in SYNC_OPS or (name == "index" and _bool_index(args)):
            c.syncs += 1
            c.sync_ops[name] += 1
        if name == "_to_copy":
            c.casts += 1
        return out


def _bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def count_ops(fn: Callable[[], Any]) -> OpCounts:
    """Run ``fn`` once under :class:`CountOps` and return the counts."""
    with CountOps() as mode:
        fn()
    return mode.counts


def graph_breaks(fn: Callable[..., Any], *args: Any) -> tuple[int, int]:
    """``(graphs, graph breaks)`` that ``torch.compile`` makes of ``fn(*args)`` (``torch._dynamo.explain``)."""
    import torch._dynamo

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(fn)(*args)
    torch._dynamo.reset()
    return explanation.graph_count, explanation.graph_break_count
