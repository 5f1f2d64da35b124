"""The LightningModule: one image pass, the methods' gradient rules, manual optimisation, evaluation."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

from prograd_pl.errors import MethodError
from prograd_pl.methods import COMPILE_MODES
from prograd_pl.methods.gradients import (
    BACKWARDS,
    context_gradients,
    head_losses,
    twin_context_gradients,
    twin_losses,
)
from prograd_pl.methods.losses import FiniteWatch
from prograd_pl.methods.projection import conflict_cosine, project_and_flag
from prograd_pl.models.backbone import Backbone, FrozenImagePass
from prograd_pl.models.prompt_learner import PromptLearner
from prograd_pl.models.zeroshot import zeroshot_text_features

METHODS = ("zeroshot", "coop", "prograd", "kd")


def recipe_lr(epoch: int, max_epochs: int, base_lr: float, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> float:
    """Learning rate during 0-based ``epoch`` (spec §3.1): constant warm-up, then cosine over ``max_epochs``.

    ``lr(e) = warmup_lr`` for ``e < warmup_epochs``, else ``base_lr/2 * (1 + cos(pi * (e - warmup) / E))``.
    """
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / max_epochs))


class PromptTuningModule(L.LightningModule):
    """Prompt tuning of a frozen CLIP with one of the methods ``zeroshot | coop | prograd | kd``.

    Args:
        backbone: the frozen open_clip model (shared by student and zero-shot teacher).
        prompt_learner: the learnable context (ignored by ``zeroshot``).
        method: gradient rule.
        template: hand-crafted template of the teacher / zero-shot classifier.
        lam: ProGrad's lambda, or KD's weight of the distillation loss.
        temperature: distillation temperature T.
        lr, momentum, weight_decay: SGD (weight decay and momentum act after the projection).
        max_epochs, warmup_epochs, warmup_lr: the per-epoch schedule of :func:`recipe_lr`.
        encoding: text encoding path (``auto`` = fastest exact path).
        optimizer: builds the optimiser from the parameter list (default SGD with ``lr``/``momentum``/
            ``weight_decay``); its learning rate is then set per epoch by the recipe's schedule with base ``lr``.
        mixed_dtype: ``torch.bfloat16``/``torch.float16`` autocast for the towers (the context stays fp32).
        classnames: the classes (taken from the prompt learner when there is one).
    """

    supported_methods: tuple[str, ...] = METHODS

    def __init__(
        self,
        backbone: Backbone,
        prompt_learner: PromptLearner | None,
        method: str = "prograd",
        template: str = "a photo of a {}.",
        lam: float = 1.0,
        temperature: float = 1.0,
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        max_epochs: int = 50,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        encoding: str = "auto",
        mixed_dtype: torch.dtype | None = None,
        classnames: Sequence[str] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    ) -> None:
        super().__init__()
        if method not in self.supported_methods:
            raise MethodError(f"method.name='{method}' is not one of {', '.join(self.supported_methods)}.")
        if method != "zeroshot" and prompt_learner is None:
            raise MethodError(f"method '{method}' needs a prompt learner.")
        self.method = method
        self.clip = backbone.model
        self.backbone = backbone
        self.prompt_learner = prompt_learner
        self.template = template
        self.lam, self.temperature = float(lam), float(temperature)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.max_epochs, self.warmup_epochs, self.warmup_lr = max_epochs, warmup_epochs, warmup_lr
        self.encoding = encoding
        self.optimizer_factory = optimizer
        self.mixed_dtype = mixed_dtype
        if prompt_learner is not None:  # the frozen text tower runs as a copy cast once (not autocast per call)
            prompt_learner.encoder.compute_dtype = mixed_dtype
        # how ProGrad's two gradients are taken (methods/gradients.py): auto = twin on accelerators, else sequential
        self.backward = "auto"
        self.set_compile("none")
        self.watch = FiniteWatch()
        self.automatic_optimization = False
        self.register_buffer("logit_scale", backbone.model.logit_scale.detach().exp().float().clone(), persistent=False)
        self.teacher_key: tuple | None = None
        self.register_buffer("teacher_features", torch.empty(0), persistent=False)
        self._eval_text: torch.Tensor | None = None
        self.steps_done = 0
        # counted on the device (read when results or checkpoints are written, never per step)
        self.register_buffer("conflict_count", torch.zeros((), dtype=torch.long), persistent=False)
        if classnames is None and prompt_learner is None:
            raise MethodError("zero-shot classification needs the class names.")
        self._zs_classnames = list(classnames if classnames is not None else prompt_learner.classnames)
        self.set_eval_classes(self._zs_classnames)

    # ---- classes -------------------------------------------------------------------------------------------
    @property
    def classnames(self) -> list[str]:
        if self.prompt_learner is not None:
            return self.prompt_learner.classnames
        return list(self._zs_classnames)

    def set_eval_classes(self, classnames: Sequence[str], template: str | None = None) -> None:
        """Point the classifier at ``classnames`` (base, new, or another dataset's classes)."""
        if template is not None:
            self.template = template
        learner = self.prompt_learner
        if learner is not None:
            retarget = template is not None and learner.init == "template" and template != learner.template
            if list(classnames) != learner.classnames or retarget:
                learner.set_classnames(classnames, template=template if retarget else None)
                learner.to(self.logit_scale.device)
        self._zs_classnames = list(classnames)
        self._eval_text = None
        self.n_classes = len(classnames)
        self._build_metrics(len(classnames))

    @property
    def conflicts(self) -> int:
        """Steps whose task and general gradients conflicted (ProGrad), read from the device."""
        return int(self.conflict_count)

    @conflicts.setter
    def conflicts(self, value: int) -> None:
        self.conflict_count.fill_(int(value))

    def _build_metrics(self, n: int) -> None:
        # validate_args=False: the argument checks read values back to the host (a sync per update)
        task = dict(task="multiclass", num_classes=max(n, 2), validate_args=False)
        self.test_acc = torchmetrics.Accuracy(average="micro", **task)
        self.test_macro_f1 = torchmetrics.F1Score(average="macro", **task)
        self.test_per_class = torchmetrics.Accuracy(average="none", **task)
        self.train_acc = torchmetrics.Accuracy(average="micro", **task)
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class, self.train_acc):
            m.to(self.logit_scale.device)

    def _teacher(self) -> torch.Tensor:
        key = (tuple(self.classnames), self.template)
        if self.teacher_key != key:
            feats = zeroshot_text_features(self.backbone, self.classnames, self.template)
            self.teacher_features = feats.to(self.logit_scale.device)
            self.teacher_key = key
        return self.teacher_features

    # ---- mode handling -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "PromptTuningModule":
        """Only the prompt learner follows ``mode``: the frozen towers stay in eval (RN50's BatchNorm)."""
        super().train(mode)
        self.clip.eval()
        return self

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

    def _autocast(self):
        if self.mixed_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.logit_scale.device.type, dtype=self.mixed_dtype)

    # ---- forward pieces ------------------------------------------------------------------------------------
    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        if isinstance(visual, FrozenImagePass):  # mixed precision: a copy of the tower cast once
            dtype = self.mixed_dtype or (torch.bfloat16 if visual.image_pass.bf16 else None)
            feats = visual.forward_frozen(images, dtype)
        else:
            with self._autocast():
                feats = self.clip.encode_image(images)
        return F.normalize(feats.float(), dim=-1)

    def text_features(self) -> torch.Tensor:
        if self.prompt_learner is None:
            return self._teacher()
        return F.normalize(self.prompt_learner(self.encoding).float(), dim=-1)

    def forward_part(
        self, contexts: torch.Tensor, img: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward part of a (twin) ProGrad step: text encoder on two copies of the context, logits, both
        losses ``(kl, ce, logits)``.  Static shapes, nothing read back: what ``compile=`` compiles (fullgraph)."""
        text = F.normalize(self.prompt_learner(self.encoding, ctx=contexts).float(), dim=-1)
        return twin_losses(text, img, labels, self.logit_scale, teacher, self.temperature)

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
        """How ProGrad's two gradients are taken: ``twin`` on accelerators and when compiled (launch-bound: one
        forward and one backward of twice the rows), ``sequential`` on the CPU (the fewest FLOPs), or as set in
        ``backward``."""
        if self.backward not in BACKWARDS:
            raise MethodError(f"backward='{self.backward}' is not one of {', '.join(BACKWARDS)}.")
        shared = self.prompt_learner.resolve_encoding(self.encoding) == "shared_prefix"
        if self.backward == "auto":  # a compiled step compiles the twin forward part, on any device
            twin = self.logit_scale.device.type != "cpu" or self.compile_mode != "none"
            return "twin" if shared and twin else "sequential"
        if self.backward == "twin" and not shared:
            return "sequential"
        return self.backward

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of images."""
        return self.logit_scale * self.image_features(images) @ self.text_features().t()

    # ---- training ------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        if self.prompt_learner is None:
            return None
        params = self.prompt_learner.learned_parameters()
        if self.optimizer_factory is not None:  # e.g. a partial torch.optim.SGD from the config
            opt = self.optimizer_factory(params)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        self._set_lr(opt, 0)
        return opt

    def _set_lr(self, opt: torch.optim.Optimizer, epoch: int) -> None:
        lr = recipe_lr(epoch, self.max_epochs, self.lr, self.warmup_epochs, self.warmup_lr)
        for group in opt.param_groups:
            group["lr"] = lr

    def on_train_epoch_start(self) -> None:
        opt = self.optimizers(use_pl_optimizer=False)
        self._set_lr(opt, self.current_epoch)

    def needs_teacher(self) -> bool:
        """Whether training uses the zero-shot classifier's class features (the general knowledge)."""
        return self.method in ("prograd", "kd")

    def on_fit_start(self) -> None:
        if self.prompt_learner is not None and self.needs_teacher():
            self._teacher()  # once, before the first step (it reads the prompts' lengths back to the host)
        dist = torch.distributed
        if self.prompt_learner is not None and dist.is_available() and dist.is_initialized():
            # every rank must start from the same context (DDP would broadcast parameters when wrapping)
            for param in self.prompt_learner.learned_parameters():
                torch.distributed.broadcast(param.data, src=0)

    def compute_update(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """The gradient the optimiser applies to ``ctx`` for this batch, and what to log (device tensors).

        One image-encoder pass serves student and teacher.  ProGrad's two gradients come from one text forward
        (see :meth:`resolve_backward`), unscaled, averaged over DDP ranks and only then projected.  Nothing is
        read back to the host: non-finite losses are recorded by :attr:`watch` and raised at the next read.
        """
        ctx = self.prompt_learner.ctx
        img = self.image_features(images)
        teacher = self._teacher() if self.needs_teacher() else None
        scale = self.grad_scale()
        logs: dict[str, Any] = {}
        if self.method == "prograd" and self.resolve_backward() == "twin":
            (g_general, g_task), head = twin_context_gradients(
                lambda contexts: self._forward_part(contexts, img, labels, teacher), ctx, scale
            )
        else:
            head = head_losses(self.text_features(), img, labels, self.logit_scale, teacher, self.temperature)
            if self.method == "coop":
                losses = [head.ce]
            elif self.method == "kd":
                losses = [head.ce + self.lam * head.kl]
            else:  # both cotangents at the text features, pushed through the text tower in one forward
                losses = [head.kl, head.ce]
            grads = context_gradients(head, losses, ctx, scale, backward=self.resolve_backward())
            g_task = grads[-1]
            g_general = grads[0] if len(grads) == 2 else None
        self.watch.update(self.global_step, {"cross-entropy": head.ce, "distillation": head.kl})
        logs["loss_ce"] = head.ce.detach()
        if head.kl is not None:
            logs["loss_kl"] = head.kl.detach()
        grad = self._reduce(g_task)
        if g_general is not None:
            g_general = self._reduce(g_general)
            grad, conflict = project_and_flag(grad, g_general, self.lam)
            logs["conflict"] = conflict
            logs["grad_cos"] = conflict_cosine(g_task, g_general)
        logs["logits"] = head.logits.detach()
        return grad, logs

    @staticmethod
    def _reduce(grad: torch.Tensor) -> torch.Tensor:
        """Average a gradient over all processes (identity without a process group)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            grad = grad.contiguous()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            grad = grad / dist.get_world_size()
        return grad

    def _logging_step(self) -> bool:
        """Whether Lightning writes this step's logged values (its ``log_every_n_steps``)."""
        trainer = self._trainer
        return trainer is None or trainer._logger_connector.should_update_logs

    def training_step(self, batch, batch_idx: int):
        images, labels = batch
        opt = self.optimizers()  # LightningOptimizer: its step() runs the precision plugin and advances global_step
        with self._no_autocast():
            grad, logs = self.compute_update(images, labels)
        # one gradient (the context) or one per learned parameter (e.g. CoCoOp's context and meta-net)
        grads = list(grad) if isinstance(grad, (list, tuple)) else [grad]
        params = self.prompt_learner.learned_parameters()
        for param, g in zip(params, grads, strict=True):
            param.grad = g.to(param.dtype)
        opt.step()  # 16-mixed: the plugin's GradScaler unscales, skips a non-finite step and updates its scale
        opt.zero_grad(set_to_none=True)
        self.steps_done += 1
        bs = labels.shape[0]
        if "conflict" in logs:
            self.conflict_count += logs["conflict"].long()
        self.train_acc.update(logs.pop("logits").argmax(-1), labels)
        self.log("train/loss_ce", logs["loss_ce"], prog_bar=True, batch_size=bs)
        if "loss_kl" in logs:
            self.log("train/loss_kl", logs["loss_kl"], batch_size=bs)
        if "grad_cos" in logs:
            self.log("train/grad_cos", logs["grad_cos"], batch_size=bs)
            self.log("train/conflict", logs["conflict"].float(), batch_size=bs)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("train/lr", opt.optimizer.param_groups[0]["lr"], batch_size=bs)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._logging_step():  # the one read of the non-finite record per logging interval
            self.watch.check()

    def on_train_epoch_end(self) -> None:
        self.watch.check()

    # ---- evaluation ----------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        # class text features once per evaluation, not per batch
        with torch.no_grad():
            self._eval_text = self.text_features().detach()
        for m in (self.test_acc, self.test_macro_f1, self.test_per_class):
            m.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        if self._eval_text is None:
            self.on_test_epoch_start()
        # a 2-d batch holds cached, normalised image features (see models/feature_cache.py)
        feats = images.to(self._eval_text.device) if images.dim() == 2 else self.image_features(images)
        with self._no_autocast():  # fp32 logits under a mixed-precision plugin
            logits = self.logit_scale * feats.float() @ self._eval_text.t()
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
        self._eval_text = None

    # ---- Lightning checkpoints (last.ckpt) -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only what is learned (trainable tensors) and the run's counters: never the frozen CLIP weights."""
        self.watch.check()  # a context that went non-finite is never saved
        learned = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in learned}
        # (fp16: the loss scaler's state is the precision plugin's, saved by Lightning beside this)
        checkpoint["prograd_pl"] = {"steps_done": self.steps_done, "conflicts": self.conflicts}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The learned tensors come from the checkpoint, everything frozen from this module (same backbone)."""
        saved = checkpoint["state_dict"]
        checkpoint["state_dict"] = {**{k: v for k, v in self.state_dict().items() if k not in saved}, **saved}
        counters = checkpoint.get("prograd_pl", {})
        self.steps_done = int(counters.get("steps_done", self.steps_done))
        self.conflicts = int(counters.get("conflicts", self.conflicts))
