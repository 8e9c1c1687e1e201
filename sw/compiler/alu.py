"""Schedule helpers of the layers that run on the vector ALU (pooling, residual add,
standalone activations): a serialized load -> ALU -> store step with its tokens, the
blocks a layer is cut into, accumulator loads and identity requantization.

:class:`AluSchedule` is a part of :class:`sw.compiler.Compiler`; the operator files of
:mod:`sw.ops` call these helpers from their ``lower``.
"""

from __future__ import annotations

from hw import isa

__all__ = ["AluSchedule"]


class AluSchedule:
    """ALU-layer helpers, mixed into the compiler (they use ``C``, ``emit`` and ``param_load``)."""

    def chunk(self, layer_id, first, loads, params, alus, stores):
        """One serialized load -> ALU -> store step; leaves one C2L token behind."""
        loads = list(loads)
        if first:
            loads = loads[:1] + params + loads[1:]
        loads[0] = loads[0].replace(pop_next=1)
        loads[-1] = loads[-1].replace(push_next=loads[-1].push_next | 1)
        self.emit(*loads)
        if first:
            self.emit(isa.config(key="layer", value=layer_id))
        if not alus:
            alus = [isa.sync(queue="compute")]
        alus = list(alus)
        alus[0] = alus[0].replace(pop_prev=1)
        if stores:
            alus[-1] = alus[-1].replace(push_next=1)
            stores = list(stores)
            stores[0] = stores[0].replace(pop_prev=1)
            stores[-1] = stores[-1].replace(push_prev=1)
            self.emit(*alus, *stores, isa.sync(queue="compute", pop_next=1, push_prev=1))
        else:
            alus[-1] = alus[-1].replace(push_prev=1)
            self.emit(*alus)

    def blocks(self, channels: int, total: int, per: int):
        """Channel tiles of ``cols`` x runs of at most ``per`` of ``total`` rows, in order:
        ``(first, c0, length, start, n)``; ``first`` marks the layer's first chunk."""
        first = True
        for c0 in range(0, channels, self.C):
            for start in range(0, total, per):
                yield first, c0, min(self.C, channels - c0), start, min(per, total - start)
                first = False

    def acc_load(self, sram, dram, y_size, y_stride, x_size, x_stride, length, **kw):
        return isa.load(mem="acc", sram=sram, dram=dram, y_size=y_size, x_size=x_size,
                        y_stride=y_stride, x_stride=x_stride, length=length, **kw)

    def identity_params(self, group=0):
        return self.param_load(group, 0, 1 << 30, 1)

