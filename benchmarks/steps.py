"""Pieces shared by the step benchmark and the GPU check: one training step the reference way ("plain") and
ours, the text side alone, timing, and the activation memory of a step counted from autograd's saved tensors.

* plain: as the reference code (spec §1.7): the student and a second CLIP copy (teacher) each encode the batch,
  the class prompts go through the text transformer at the full 77 tokens, ``L_kl.backward(retain_graph=True)``
  then ``L_ce.backward()``, projection, SGD step.  Teacher text features are computed once at set-up.
* ours: ``PromptModule.compute_update`` (one fast frozen image pass, shared-prefix text encoding without
  padding rows, both gradients from one text-tower forward), projection inside it, SGD step.
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEMPLATE = "a photo of a {}."
N_CTX = 16
LR, MOMENTUM, WEIGHT_DECAY, LAM = 0.002, 0.9, 5e-4, 1.0

# 100 real class names (CIFAR-100); underscores become spaces in the prompts
_CIFAR100 = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel
can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm"""
CIFAR100 = _CIFAR100.split()
assert len(CIFAR100) == 100 and len(set(CIFAR100)) == 100


def imagenet_classnames() -> list[str]:
    """The 1000 ImageNet class names CLIP uses (shipped with open_clip)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def classnames(n: int) -> list[str]:
    """``n`` real class names: CIFAR-100's up to 100, ImageNet's beyond."""
    if n <= 100:
        return CIFAR100[:n]
    names = imagenet_classnames()
    if n > len(names):
        raise ValueError(f"at most {len(names)} class names")
    return names[:n]


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], reps: int, device: torch.device) -> dict[str, float]:
    """One warm-up call, then ``reps`` timed calls: median wall and process-CPU seconds."""
    fn()
    sync(device)
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"s": statistics.median(walls), "cpu_s": statistics.median(cpus), "walls": walls}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# ---- saved-tensor accounting ------------------------------------------------------------------------------------
class SavedTensors:
    """Bytes of the tensors autograd saves for backward while active (activation memory of a step).

    Each storage is counted once; the frozen weights and buffers given in ``exclude`` (saved by reference, they
    are the model, not activations) are not counted.  Works the same on any device.
    """

    def __init__(self, exclude: list[torch.Tensor]) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: dict[int, int] = {}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen[ptr] = storage.nbytes()
        return t

    def __enter__(self) -> "SavedTensors":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


def model_tensors(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


# ---- a step ------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    backbone: object
    learner: object
    images: torch.Tensor
    labels: torch.Tensor
    device: torch.device


def build_case(
    model: str,
    n_classes: int,
    batch: int,
    device: str = "cpu",
    fast_image: bool = True,
    image_bf16: bool = False,
) -> Case:
    """Random-weight ``model``, a template-init prompt learner for ``n_classes`` real names, a random batch."""
    from prograd_pl.models.backbone import load_backbone
    from prograd_pl.models.prompt_learner import PromptLearner

    dev = torch.device(device)
    torch.manual_seed(0)
    backbone = load_backbone(model, None, device=dev, fast_image=fast_image, image_bf16=image_bf16)
    learner = PromptLearner(backbone, classnames(n_classes), n_ctx=N_CTX, init="template", template=TEMPLATE)
    learner.to(dev)
    gen = torch.Generator().manual_seed(1)
    size = backbone.image_size
    images = torch.randn(batch, 3, size, size, generator=gen).to(dev)
    labels = torch.randint(0, n_classes, (batch,), generator=gen).to(dev)
    return Case(backbone, learner, images, labels, dev)


def plain_step(case: Case, precision: str = "fp32") -> tuple[Callable[[], tuple[torch.Tensor, float]], dict]:
    """The reference-style step (see the module docstring); returns the step and its timing breakdown dict."""
    from prograd_pl.methods.losses import distillation_loss
    from prograd_pl.methods.projection import conflict_cosine
    from prograd_pl.models.backbone import configure_image_pass, text_tower
    from prograd_pl.models.prompt_learner import classname_text
    from prograd_pl.models.text_encoder import PromptTextEncoder

    backbone, learner, dev = case.backbone, case.learner, case.device
    student = backbone.model
    configure_image_pass(student, fast=False)
    teacher = copy.deepcopy(student).float().eval()  # the reference holds a second CLIP copy
    scale = backbone.logit_scale
    with torch.no_grad():  # teacher class features once at build time (untimed; truncation is exact)
        ids = backbone.tokenizer([TEMPLATE.format(classname_text(c)) for c in learner.classnames]).to(dev)
        teacher_text = F.normalize(
            PromptTextEncoder(text_tower(teacher)).encode_tokens(ids, truncate=True), dim=-1
        )
    ctx = learner.ctx
    opt = torch.optim.SGD([ctx], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    parts: dict[str, list[float]] = {}

    def tick(name: str, t0: float) -> float:
        sync(dev)
        t1 = time.perf_counter()
        parts.setdefault(name, []).append(t1 - t0)
        return t1

    def step() -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        with autocast(dev, precision):
            img = F.normalize(student.encode_image(case.images).float(), dim=-1)
            with torch.no_grad():
                img_t = F.normalize(teacher.encode_image(case.images).float(), dim=-1)
            t0 = tick("image encoding (student + teacher)", t0)
            text = F.normalize(learner("plain").float(), dim=-1)
        t0 = tick("text forward (77 tokens)", t0)
        logits = scale * img @ text.t()
        teacher_logits = scale * img_t @ teacher_text.t()
        ce = F.cross_entropy(logits, case.labels)
        kl = distillation_loss(logits, teacher_logits, 1.0)
        opt.zero_grad(set_to_none=True)
        kl.backward(retain_graph=True)
        g_general = ctx.grad.clone()
        opt.zero_grad(set_to_none=True)
        ce.backward()
        g_task = ctx.grad
        # the official code: the cosine read on the host, then an if
        cos = float(conflict_cosine(g_task, g_general))
        grad = g_task
        if cos < 0:
            d, g = g_task.flatten(), g_general.flatten()
            grad = (d - LAM * torch.dot(d, g) / torch.dot(g, g) * g).view_as(g_task)
        ctx.grad = grad
        applied = grad.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tick("losses, 2 backward, projection, SGD", t0)
        return applied, cos

    return step, parts


def our_step(
    case: Case, method: str = "prograd", precision: str = "fp32", backward: str = "auto"
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """``PromptModule.compute_update`` + SGD for ``method`` (prograd or coop); the step returns the applied
    gradient and the cosine of the two gradients (a device tensor, NaN for coop: the step itself reads nothing
    back).  ``backward='twin'`` forces the GPU path on the CPU."""
    from prograd_pl.methods.coop import CoOp, ProGrad
    from prograd_pl.methods.module import PromptModule
    from prograd_pl.methods.rule import ProGradRule

    cls = {"prograd": ProGrad, "coop": CoOp}[method]
    precision_name = "bf16-mixed" if precision == "bf16" else "32"
    learned = cls(case.backbone, case.learner.classnames, template=TEMPLATE, prompt=case.learner, encoding="auto",
                  precision=precision_name)  # fmt: skip
    rule = ProGradRule(lam=LAM) if method == "prograd" else None
    module = PromptModule(learned, rule=rule).to(case.device)
    module.backward = backward
    module.train()
    if rule is not None:
        learned.teacher()  # teacher class features once at build time (cached by class names and template)
    ctx = case.learner.ctx
    opt = torch.optim.SGD([ctx], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    nan = torch.full((), float("nan"))

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        (grad,), logs = module.compute_update(case.images, case.labels)
        ctx.grad = grad.to(ctx.dtype)
        applied = grad.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return applied, logs.get("grad_cos", nan)

    step.module = module  # type: ignore[attr-defined]
    return step


# ---- the text side alone (forward + both gradients) ---------------------------------------------------------------
def text_side(case: Case, variant: str, precision: str = "fp32") -> Callable[[], list[torch.Tensor]]:
    """Class text features and both context gradients (KL, CE) for fixed image features.

    plain: 77-token encoding and one ``autograd.grad`` per loss; ours: shared-prefix encoding and
    :func:`prograd_pl.methods.gradients.context_gradients`.
    """
    from prograd_pl.methods.gradients import context_gradients, head_losses
    from prograd_pl.methods.losses import distillation_loss

    learner, dev = case.learner, case.device
    dim = case.backbone.model.text_projection.shape[1]
    gen = torch.Generator().manual_seed(2)
    img = F.normalize(torch.randn(case.images.shape[0], dim, generator=gen), dim=-1).to(dev)
    teacher = F.normalize(torch.randn(learner.n_cls, dim, generator=gen), dim=-1).to(dev)
    scale = case.backbone.logit_scale

    def run() -> list[torch.Tensor]:
        with autocast(dev, precision):
            feats = learner("plain" if variant == "plain" else "auto")
        head = head_losses(F.normalize(feats.float(), dim=-1), img, case.labels, scale, teacher)
        if variant == "plain":  # the losses on the attached features: each grad call runs the whole backward
            logits = scale * img @ head.text.t()
            kl = distillation_loss(logits, scale * img @ teacher.t(), 1.0)
            ce = F.cross_entropy(logits, case.labels)
            g_general = torch.autograd.grad(kl, learner.ctx, retain_graph=True)[0]
            return [g_general, torch.autograd.grad(ce, learner.ctx)[0]]
        return context_gradients(head, [head.kl, head.ce], learner.ctx)

    return run


def activation_bytes(fn: Callable[[], object], *modules: torch.nn.Module) -> int:
    """Bytes autograd saves while ``fn`` runs (each storage once, the modules' weights excluded)."""
    with SavedTensors(model_tensors(*modules)) as saved:
        fn()
    return saved.bytes
