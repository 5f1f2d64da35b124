"""Time and memory of one ProGrad training step on this CPU: the reference way ("plain") vs this project ("ours").

Setting: randomly initialised open_clip ``RN50-quickgelu`` (``pretrained=None``), 100 classes (the CIFAR-100 class
names), batch 32 of random 224 px images, ``n_ctx=16`` template init (``a photo of a {}.``), fp32, SGD lr 0.002
momentum 0.9 weight decay 5e-4, lambda 1.

* plain: as the reference code (spec §1.7): the student and a second CLIP copy (teacher) each encode the batch,
  the class prompts go through the text transformer at the full 77 tokens, ``L_kl.backward(retain_graph=True)``
  then ``L_ce.backward()``, projection, SGD step.  Teacher text features are computed once at set-up.
* ours: ``PromptTuningModule.compute_update`` (one image pass, ``encoding='auto'`` = shared-prefix text encoding,
  two ``autograd.grad`` calls), projection inside it, SGD step.

Each variant runs in its own fresh subprocess so that peak memory (``ru_maxrss``) is its own.  One warm-up step
(also used to check that both variants make the same update from the same context and batch), then ``--reps``
timed steps; the median is reported.  Usage: ``python benchmarks/bench_step.py [--reps N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "RN50-quickgelu"
TEMPLATE = "a photo of a {}."
BATCH = 32
N_CTX = 16
LR, MOMENTUM, WEIGHT_DECAY, LAM = 0.002, 0.9, 5e-4, 1.0
VARIANTS = ("plain", "ours")

# 100 real class names (CIFAR-100); underscores become spaces in the prompts
_CIFAR100 = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel
can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm"""
CLASSNAMES = _CIFAR100.split()
assert len(CLASSNAMES) == 100 and len(set(CLASSNAMES)) == 100


def _rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------------------
# child: one variant
# ---------------------------------------------------------------------------------------------------------------
def run_variant(variant: str, reps: int, out: Path) -> None:
    import torch
    import torch.nn.functional as F

    from prograd_pl.methods.losses import distillation_loss
    from prograd_pl.methods.module import PromptTuningModule
    from prograd_pl.methods.projection import conflict_cosine, project_conflicting
    from prograd_pl.models.backbone import load_backbone, text_tower
    from prograd_pl.models.prompt_learner import PromptLearner, classname_text
    from prograd_pl.models.text_encoder import PromptTextEncoder

    t_setup = time.perf_counter()
    torch.manual_seed(0)
    backbone = load_backbone(MODEL, None)
    learner = PromptLearner(backbone, CLASSNAMES, n_ctx=N_CTX, init="template", template=TEMPLATE)
    ctx = learner.ctx
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, backbone.image_size, backbone.image_size, generator=gen)
    labels = torch.randint(0, len(CLASSNAMES), (BATCH,), generator=gen)
    checksum = sum(float(p.double().sum()) for p in backbone.model.parameters())
    opt = torch.optim.SGD([ctx], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    parts: dict[str, list[float]] = {}

    def tick(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        parts.setdefault(name, []).append(t1 - t0)
        return t1

    if variant == "plain":
        student = backbone.model
        teacher = copy.deepcopy(backbone.model).float().eval()  # the reference holds a second CLIP copy
        scale = backbone.logit_scale
        with torch.no_grad():  # teacher class features once at build time (untimed; truncation is exact)
            ids = backbone.tokenizer([TEMPLATE.format(classname_text(c)) for c in CLASSNAMES])
            encoder = PromptTextEncoder(text_tower(teacher, MODEL))
            teacher_text = F.normalize(encoder.encode_tokens(ids, truncate=True), dim=-1)

        def step() -> tuple[torch.Tensor, float]:
            t0 = time.perf_counter()
            img = F.normalize(student.encode_image(images), dim=-1)
            with torch.no_grad():
                img_t = F.normalize(teacher.encode_image(images), dim=-1)
            t0 = tick("image encoding", t0)
            text = F.normalize(learner("plain"), dim=-1)
            t0 = tick("text forward", t0)
            logits = scale * img @ text.t()
            teacher_logits = scale * img_t @ teacher_text.t()
            ce = F.cross_entropy(logits, labels)
            kl = distillation_loss(logits, teacher_logits, 1.0)
            opt.zero_grad(set_to_none=True)
            kl.backward(retain_graph=True)
            g_general = ctx.grad.clone()
            opt.zero_grad(set_to_none=True)
            ce.backward()
            g_task = ctx.grad
            cos = conflict_cosine(g_task, g_general)
            grad = project_conflicting(g_task, g_general, LAM)
            ctx.grad = grad
            applied = grad.detach().clone()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tick("losses, 2 backward, projection, SGD", t0)
            return applied, cos

    else:
        module = PromptTuningModule(backbone, learner, method="prograd", template=TEMPLATE, lam=LAM, encoding="auto")
        module.train()
        module._teacher()  # teacher class features once at build time (cached by class names and template)
        encoding = learner.resolve_encoding("auto")

        def step() -> tuple[torch.Tensor, float]:
            grad, logs = module.compute_update(images, labels)
            ctx.grad = grad.to(ctx.dtype)
            applied = grad.detach().clone()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return applied, float(logs["grad_cos"])

    t_setup = time.perf_counter() - t_setup
    rss_before, peak_before = _rss_mb(), _peak_mb()
    ctx0 = ctx.detach().clone()
    grad0, cos0 = step()  # warm-up, also the equivalence check
    ctx1 = ctx.detach().clone()
    times, cpu_times = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak_after = _peak_mb()

    if variant == "plain":
        breakdown = {k: statistics.median(v[1:]) for k, v in parts.items()}  # timed reps only
    else:  # pieces of compute_update timed separately after the run (one call each)
        t0 = time.perf_counter()
        module.image_features(images)
        t1 = time.perf_counter()
        module.text_features()
        t2 = time.perf_counter()
        breakdown = {"image encoding": t1 - t0, f"text forward ({encoding})": t2 - t1}
        breakdown["losses, 2 grads, projection, SGD"] = max(0.0, statistics.median(times) - (t2 - t0))

    torch.save({"ctx0": ctx0, "ctx1": ctx1, "grad": grad0}, out.with_suffix(".pt"))
    out.write_text(
        json.dumps(
            {
                "variant": variant,
                "times": times,
                "median": statistics.median(times),
                "cpu_median": statistics.median(cpu_times),
                "setup_s": t_setup,
                "rss_before_mb": rss_before,
                "peak_before_mb": peak_before,
                "peak_mb": peak_after,
                "step_peak_delta_mb": peak_after - rss_before,
                "breakdown": breakdown,
                "cos": cos0,
                "checksum": checksum,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# parent: run both variants in fresh processes, compare, print
# ---------------------------------------------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="timed steps per variant after 1 warm-up (default 2)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.variant:
        run_variant(args.variant, args.reps, args.out)
        return

    import torch

    wall = time.perf_counter()
    print(
        f"ProGrad step benchmark: {MODEL} (random weights), {len(CLASSNAMES)} classes, batch {BATCH}, 224 px, "
        f"n_ctx {N_CTX} template init, fp32, CPU"
    )
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}")
    print("load average at start (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"1 warm-up step + {args.reps} timed steps per variant, each variant in a fresh subprocess", flush=True)
    res, tensors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in VARIANTS:
            out = Path(tmp) / f"{v}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", v, "--reps", str(args.reps)]
            subprocess.run([*cmd, "--out", str(out)], check=True)
            res[v] = json.loads(out.read_text())
            tensors[v] = torch.load(out.with_suffix(".pt"))
            print(f"  {v}: done ({sum(res[v]['times']):.1f} s timed, set-up {res[v]['setup_s']:.1f} s)", flush=True)

    print(f"\ntorch threads: {res['ours']['threads']}")
    print(
        f"{'variant':<8} {'s/step (median)':>16} {'steps (s)':>20} {'CPU s/step':>11} {'peak RSS MB':>12} "
        f"{'step peak Δ MB':>15}"
    )
    for v in VARIANTS:
        r = res[v]
        steps = " ".join(f"{t:.2f}" for t in r["times"])
        print(
            f"{v:<8} {r['median']:>16.3f} {steps:>20} {r['cpu_median']:>11.2f} {r['peak_mb']:>12.0f} "
            f"{r['step_peak_delta_mb']:>15.0f}"
        )
    print("  CPU s/step = process CPU time (all threads) per step, less sensitive to other load on the machine")
    print(
        "  peak RSS = whole process (plain includes the teacher's second CLIP copy, as the reference); "
        "step peak Δ = peak RSS after the steps - RSS just before them"
    )
    for v in VARIANTS:
        print(f"\nbreakdown, {v} (s):")
        for name, t in res[v]["breakdown"].items():
            print(f"  {name:<40} {t:8.3f}")

    p, o = tensors["plain"], tensors["ours"]
    same_init = bool(torch.equal(p["ctx0"], o["ctx0"])) and res["plain"]["checksum"] == res["ours"]["checksum"]
    upd_p, upd_o = p["ctx1"] - p["ctx0"], o["ctx1"] - o["ctx0"]
    ctx_diff = float((p["ctx1"] - o["ctx1"]).abs().max())
    upd_rel = float((upd_p - upd_o).abs().max() / upd_p.abs().max())
    grad_rel = float((p["grad"] - o["grad"]).abs().max() / p["grad"].abs().max())
    print("\nsame update check (first step from the same init ctx and batch):")
    print(f"  same weights and init ctx: {same_init}")
    print(f"  grad cos(g_ce, g_kl): plain {res['plain']['cos']:+.6f}, ours {res['ours']['cos']:+.6f}")
    print(f"  max |ctx_plain - ctx_ours| after the step: {ctx_diff:.3e}")
    print(f"  max |update diff| / max |update|: {upd_rel:.3e}")
    print(f"  max |grad diff| / max |grad|: {grad_rel:.3e}")
    print("load average at end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\nwall time of the whole benchmark: {time.perf_counter() - wall:.1f} s")
    print(f"speedup in CPU time per step: {res['plain']['cpu_median'] / res['ours']['cpu_median']:.2f}x")
    print(f"speedup: {res['plain']['median'] / res['ours']['median']:.2f}x")


if __name__ == "__main__":
    main()
