"""DDP for prompt tuning: no DistributedDataParallel wrapper, gradients all-reduced explicitly.

ProGrad must project the gradients averaged over all ranks (projecting per rank and then averaging is another
rule).  The module computes both gradients with ``torch.autograd.grad`` and all-reduces each before projecting,
so DDP's bucketed backward hooks are neither needed nor triggered; wrapping would only make DDP wait for a
backward that never comes.
"""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy


class PromptDDPStrategy(DDPStrategy):
    """``DDPStrategy`` that keeps the LightningModule unwrapped (one process per device, distributed sampler)."""

    strategy_name = "prograd_ddp"

    def configure_ddp(self) -> None:
        # The model is left as the LightningModule: training_step is called directly and the module
        # all-reduces its gradients itself (PromptTuningModule._reduce).
        pass
