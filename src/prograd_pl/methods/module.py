"""The one LightningModule of every prompt method: manual optimisation, the rule, the schedule, evaluation.

:class:`PromptModule` trains any :class:`prograd_pl.methods.base.PromptMethod`: per batch one frozen image pass,
the method's class features, its task loss (and, under ``method.rule=prograd``, the general loss) on a detached
copy of the features, their gradients pushed through the text tower, averaged over DDP ranks, projected by the
rule, applied by the optimiser through Lightning's ``LightningOptimizer`` (so the precision plugin's GradScaler
unscales, checks and skips).  Nothing is read back to the host during a step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import lightning as L
import torch
import torchmetrics

from prograd_pl.errors import MethodError
from prograd_pl.methods import COMPILE_MODES
from prograd_pl.methods.base import PromptMethod
from prograd_pl.methods.gradients import (
    BACKWARDS,
    loss_gradients,
    parameter_gradients,
    twin_context_gradients,
)
from prograd_pl.methods.losses import FiniteWatch
from prograd_pl.methods.rule import ProGradRule

WATCH_NAMES = {"ce": "cross-entropy", "kg": "knowledge-guided", "kl": "distillation"}
"""A loss part's log name -> the name a non-finite value is reported under."""


def recipe_lr(epoch: int, max_epochs: int, base_lr: float, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> float:
    """Learning rate during 0-based ``epoch`` (spec §3.1): constant warm-up, then cosine over ``max_epochs``.

    ``lr(e) = warmup_lr`` for ``e < warmup_epochs``, else ``base_lr/2 * (1 + cos(pi * (e - warmup) / E))``.
    """
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / max_epochs))


def default_optimizer(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The recipe's SGD (lr 0.002, momentum 0.9, weight decay 5e-4), used when no ``method.optim`` is given."""
    return torch.optim.SGD(params, lr=0.002, momentum=0.9, weight_decay=5e-4)


class PromptModule(L.LightningModule):
    """Trains and evaluates ``method``.

    Args:
        method: the prompt method (its learned tensors, class features, logits, task loss).
        rule: ProGrad's rule around the method's task gradient, or None.
        optim: builds the optimiser from the learned tensors (a partial ``torch.optim.SGD`` from the config); its
            learning rate is the base of the warm-up + cosine schedule of :func:`recipe_lr`.
        max_epochs, warmup_epochs, warmup_lr: the schedule.
    """

    def __init__(
        self,
        method: PromptMethod,
        rule: ProGradRule | None = None,
        optim: Callable[..., torch.optim.Optimizer] | None = None,
        max_epochs: int = 1,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
    ) -> None:
        super().__init__()
        if rule is not None and not method.accepts_rule:
            raise MethodError(f"method.rule=prograd cannot wrap {type(method).__name__}: it has no task gradient of "
                              "its own to project.")  # fmt: skip
        if rule is None and method.requires_rule:
            raise MethodError(f"{type(method).__name__} is a method under ProGrad's rule; method.rule=none is "
                              "method=coop.")  # fmt: skip
        self.method = method
        self.rule = rule
        self.optimizer_factory = optim or default_optimizer
        self.max_epochs, self.warmup_epochs, self.warmup_lr = max(int(max_epochs), 1), warmup_epochs, warmup_lr
        self.base_lr: float | None = None
        # how ProGrad's two gradients are taken (methods/gradients.py): auto = twin on accelerators, else sequential
        self.backward = "auto"
        self.set_compile("none")
        self.watch = FiniteWatch()
        self.automatic_optimization = False
        self._eval_text: torch.Tensor | None = None
        self.steps_done = 0
        # counted on the device (read when results or checkpoints are written, never per step)
        self.register_buffer("conflict_count", torch.zeros((), dtype=torch.long), persistent=False)
        self.set_eval_classes(method.classnames)

    # ---- what the app reads --------------------------------------------------------------------------------
    @property
    def prompt_learner(self):
        """The method's learnable prompt (what ``prompt_learner.pt`` saves), or None."""
        return self.method.prompt_learner

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's logit scale (also the module's device anchor)."""
        return self.method.logit_scale

    @property
    def classnames(self) -> list[str]:
        return self.method.classnames

    @property
    def conflicts(self) -> int:
        """Steps whose task and general gradients conflicted (the rule), read from the device."""
        return int(self.conflict_count)

    @conflicts.setter
    def conflicts(self, value: int) -> None:
        self.conflict_count.fill_(int(value))

    def set_eval_classes(self, classnames, template: str | None = None) -> None:
        """Point the classifier at ``classnames`` (base, new, or another dataset's classes)."""
        self.method.set_classes(classnames, template)
        self._eval_text = None
        self.n_classes = len(classnames)
        self._build_metrics(len(classnames))

    def _build_metrics(self, n: int) -> None:
        # validate_args=False: the argument checks read values back to the host (a sync per update)
        task = dict(task="multiclass", num_classes=max(n, 2), validate_args=False)
        self.test_acc = torchmetrics.Accuracy(average="micro", **task)
        self.test_macro_f1 = torchmetrics.F1Score(average="macro", **task)
        self.test_per_class = torchmetrics.Accuracy(average="none", **task)
        self.train_acc = torchmetrics.Accuracy(average="micro", **task)
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class, self.train_acc):
            m.to(self.logit_scale.device)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.image_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of images."""
        img = self.method.image_features(images)
        return self.method.logits(img, self.method.class_features(img))

    # ---- precision -----------------------------------------------------------------------------------------
    def grad_scale(self) -> float | torch.Tensor:
        """The fp16 loss scale of Lightning's precision plugin (``16-mixed``) as a device tensor, else 1.0.

        The losses are multiplied by it; the gradients stay scaled and the plugin's GradScaler unscales them,
        skips a step with an inf/NaN (its one read per step) and adapts the scale, when ``opt.step()`` runs.
        """
        scaler = getattr(self._trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        if scaler is None:
            return 1.0
        return scaler.scale(torch.ones((), device=self.logit_scale.device))

    def _no_autocast(self):
        """Lightning's mixed-precision plugins run the step under autocast; the towers here run copies cast once
        to the precision's dtype, and the head, losses and projection stay fp32: autocast is switched off."""
        return torch.autocast(device_type=self.logit_scale.device.type, enabled=False)

    # ---- the twin path -------------------------------------------------------------------------------------
    def forward_part(
        self, contexts: torch.Tensor, img: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The forward part of a twin step: class features of two copies of the context, the general loss on the
        first and the method's task loss on the second: ``(general, task, logits, parts)``.  Static shapes,
        nothing read back: what ``compile=`` compiles (fullgraph)."""
        text = self.method.twin_class_features(contexts)
        general = self.rule.general_loss(self.method.logits(img, text[0]), img, teacher, self.logit_scale)
        logits = self.method.logits(img, text[1])
        task, parts = self.method.task_loss(logits, text[1], img, labels)
        return general, task, logits, parts

    def set_compile(self, mode: str = "none") -> None:
        """``torch.compile`` the step's forward part (``default``, ``reduce-overhead``: CUDA graphs) or not
        (``none``); its backward is compiled with it.  The first step compiles."""
        if mode not in COMPILE_MODES:
            raise MethodError(f"compile='{mode}' is not one of {', '.join(COMPILE_MODES)}.")
        self.compile_mode = mode
        self._forward_part = (
            self.forward_part if mode == "none" else torch.compile(self.forward_part, fullgraph=True, mode=mode)
        )

    def resolve_backward(self) -> str:
        """How the rule's two gradients are taken: ``twin`` on accelerators and when compiled (launch-bound: one
        forward and one backward of twice the rows), ``sequential`` on the CPU (the fewest FLOPs), or as set in
        ``backward``.  Twin needs a method whose class features take a batch of contexts."""
        if self.backward not in BACKWARDS:
            raise MethodError(f"backward='{self.backward}' is not one of {', '.join(BACKWARDS)}.")
        twin_ready = self.rule is not None and self.method.twin_ready()
        if self.backward == "auto":  # a compiled step compiles the twin forward part, on any device
            twin = self.logit_scale.device.type != "cpu" or self.compile_mode != "none"
            return "twin" if twin_ready and twin else "sequential"
        if self.backward == "twin" and not twin_ready:
            return "sequential"
        return self.backward

    # ---- training ------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        params = self.method.learned_parameters()
        if not self.method.trains or not params:
            return None
        opt = self.optimizer_factory(params)
        self.base_lr = float(opt.defaults["lr"])
        self._set_lr(opt, 0)
        return opt

    def _set_lr(self, opt: torch.optim.Optimizer, epoch: int) -> None:
        lr = recipe_lr(epoch, self.max_epochs, self.base_lr, self.warmup_epochs, self.warmup_lr)
        for group in opt.param_groups:
            group["lr"] = lr

    def on_train_epoch_start(self) -> None:
        self._set_lr(self.optimizers(use_pl_optimizer=False), self.current_epoch)

    def needs_teacher(self) -> bool:
        """Whether training reads zero-shot CLIP's class features (the general knowledge)."""
        return self.rule is not None or self.method.needs_teacher

    def on_fit_start(self) -> None:
        if self.method.trains and self.needs_teacher():
            self.method.teacher()  # once, before the first step (it reads the prompts' lengths back to the host)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            # every rank must start from the same context (DDP would broadcast parameters when wrapping)
            for param in self.method.learned_parameters():
                torch.distributed.broadcast(param.data, src=0)

    def compute_update(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """The gradients the optimiser applies to the method's learned tensors (in their order), and what to log.

        The losses are built on a detached copy of the class features; their gradients there (cotangents) are
        pushed through the text tower, one backward per loss (or, on the twin path, two copies of the context
        through one forward and one backward).  Averaged over DDP ranks, then projected by the rule.  Nothing is
        read back: non-finite losses are recorded by :attr:`watch` and raised at its next read.
        """
        method, rule = self.method, self.rule
        params = method.learned_parameters()
        img = method.image_features(images)
        scale = self.grad_scale()
        general = None
        if rule is not None and self.resolve_backward() == "twin":
            teacher = method.teacher()
            out: dict[str, Any] = {}

            def forward_losses(contexts: torch.Tensor):
                out["general"], out["task"], out["logits"], out["parts"] = self._forward_part(
                    contexts, img, labels, teacher
                )
                return out["general"], out["task"], out["logits"]

            (g_general, g_task), _ = twin_context_gradients(forward_losses, params[0], scale)
            general, logits, parts = out["general"], out["logits"], out["parts"]
            g_task, g_general = [self._reduce(g_task)], [self._reduce(g_general)]
        else:
            text = method.class_features(img)
            # the losses on a detached copy of the class features (their gradient there costs no pass through the
            # tower), unless the image side learns too: then each loss's gradient goes through the whole graph
            head = text if method.prompts_image else text.detach().requires_grad_(True)
            logits = method.logits(img, head)
            task, parts = method.task_loss(logits, head, img, labels)
            if rule is not None:  # the teacher is zero-shot CLIP: the frozen, unprompted image features
                frozen = method.teacher_image_features(images) if method.prompts_image else img
                general = rule.general_loss(logits, frozen, method.teacher(), self.logit_scale)
            losses = [task] if general is None else [general, task]
            if method.prompts_image:
                per_loss = loss_gradients(losses, params, scale)
            else:
                per_loss = parameter_gradients(text, head, losses, params, scale, backward=self.resolve_backward())
            g_task = self._reduce_all(per_loss[-1])
            g_general = self._reduce_all(per_loss[0]) if general is not None else None
        watched = {WATCH_NAMES.get(k, k): v for k, v in parts.items()}
        if general is not None:
            watched["distillation"] = general
        self.watch.update(self.global_step, watched)
        logs: dict[str, Any] = {f"loss_{k}": v.detach() for k, v in parts.items()}
        if general is not None:
            logs["loss_kl"] = general.detach()
        grads = g_task
        if g_general is not None:
            grads, rule_logs = rule.apply(g_task, g_general)
            logs.update(rule_logs)
        logs["logits"] = logits.detach()
        return grads, logs

    @staticmethod
    def _reduce(grad: torch.Tensor) -> torch.Tensor:
        """Average a gradient over all processes (identity without a process group)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            grad = grad.contiguous()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            grad = grad / dist.get_world_size()
        return grad

    def _reduce_all(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Average several gradients over the ranks with one all-reduce (identity without a process group)."""
        if len(grads) == 1:
            return [self._reduce(grads[0])]
        flat = self._reduce(torch.cat([g.flatten() for g in grads]))
        return [p.view_as(g) for p, g in zip(torch.split(flat, [g.numel() for g in grads]), grads)]

    def _logging_step(self) -> bool:
        """Whether Lightning writes this step's logged values (its ``log_every_n_steps``)."""
        trainer = self._trainer
        return trainer is None or trainer._logger_connector.should_update_logs

    def training_step(self, batch, batch_idx: int):
        images, labels = batch
        opt = self.optimizers()  # LightningOptimizer: its step() runs the precision plugin and advances global_step
        with self._no_autocast():
            grads, logs = self.compute_update(images, labels)
        for param, g in zip(self.method.learned_parameters(), grads, strict=True):
            param.grad = g.to(param.dtype)
        opt.step()  # 16-mixed: the plugin's GradScaler unscales, skips a non-finite step and updates its scale
        opt.zero_grad(set_to_none=True)
        self.steps_done += 1
        if self._trainer is not None and self.trainer.is_last_batch:  # the epoch's final parameters
            self.method.end_of_epoch(self.current_epoch, self.max_epochs)
        bs = labels.shape[0]
        if "conflict" in logs:
            self.conflict_count += logs["conflict"].long()
        self.train_acc.update(logs.pop("logits").argmax(-1), labels)
        self.log("train/loss_ce", logs.pop("loss_ce"), prog_bar=True, batch_size=bs)
        for key in ("loss_kl", "loss_kg", "grad_cos"):
            if key in logs:
                self.log(f"train/{key}", logs.pop(key), batch_size=bs)
        for key in ("conflict", "conflict_tensors"):
            if key in logs:
                self.log(f"train/{key}", logs.pop(key).float(), batch_size=bs)
        for key, value in logs.items():  # a method's other loss parts
            self.log(f"train/{key}", value, batch_size=bs)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("train/lr", opt.optimizer.param_groups[0]["lr"], batch_size=bs)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._logging_step():  # the one read of the non-finite record per logging interval
            self.watch.check()

    def on_train_epoch_end(self) -> None:
        self.watch.check()

    def on_train_end(self) -> None:
        self.method.end_of_training()

    # ---- evaluation ----------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._eval_text = self.method.eval_class_features()  # once per evaluation (None: per image)
        self._eval_ready = True
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class):
            m.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        if not getattr(self, "_eval_ready", False):
            self.on_test_epoch_start()
        # a 2-d batch holds cached, normalised image features (see models/feature_cache.py)
        feats = images.to(self.logit_scale.device) if images.dim() == 2 else self.method.image_features(images)
        logits = self.method.eval_logits(feats, self._eval_text)
        preds = logits.argmax(-1)
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class):
            m.update(preds, labels)

    def on_test_epoch_end(self) -> None:
        acc = self.test_acc.compute()
        prefix = getattr(self, "metric_prefix", "test")  # one name per evaluated target: test/base, test/new, ...
        self.log(f"{prefix}/acc", acc * 100.0)
        self.log(f"{prefix}/macro_f1", self.test_macro_f1.compute() * 100.0)
        self.test_results = {
            "acc": float(acc) * 100.0,
            "macro_f1": float(self.test_macro_f1.compute()) * 100.0,
            "per_class_acc": [float(a) * 100.0 for a in self.test_per_class.compute()[: self.n_classes]],
        }
        self._eval_text, self._eval_ready = None, False

    # ---- Lightning checkpoints (last.ckpt) -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only what is learned (trainable tensors) and the run's counters: never the frozen CLIP weights."""
        self.watch.check()  # a context that went non-finite is never saved
        learned = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in learned}
        # (fp16: the loss scaler's state is the precision plugin's, saved by Lightning beside this)
        checkpoint["prograd_pl"] = {"steps_done": self.steps_done, "conflicts": self.conflicts,
                                    "method": self.method.training_state()}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The learned tensors come from the checkpoint, everything frozen from this module (same backbone)."""
        saved = checkpoint["state_dict"]
        checkpoint["state_dict"] = {**{k: v for k, v in self.state_dict().items() if k not in saved}, **saved}
        counters = checkpoint.get("prograd_pl", {})
        self.steps_done = int(counters.get("steps_done", self.steps_done))
        self.conflicts = int(counters.get("conflicts", self.conflicts))
        self.method.load_training_state(counters.get("method") or {})
