"""Time and memory of one CoCoOp training step: the reference way ("plain") vs this project ("ours").

Default setting: randomly initialised open_clip ``RN50-quickgelu`` (``pretrained=None``), 100 classes (CIFAR-100
names), batch 4 of random 224 px images, CoCoOp's prompt (``n_ctx=4`` from "a photo of a", meta-net
Linear-ReLU-Linear with hidden = image-feature dim / 16), fp32, SGD lr 0.002 momentum 0.9 weight decay 5e-4.

* plain: as the reference code (open_clip's image tower as is): per image, the context shifted by the
  meta-net's token is placed in all ``n_cls`` prompts, which go through the text transformer at the full 77
  tokens (``B x n_cls`` prompts; the graph of all images is kept until the backward), logits per image,
  cross-entropy, backward, SGD step.
* ours: ``PromptModule(CoCoOp(...)).compute_update`` (the project's frozen image pass): per image the SOT +
  shifted-context prefix is encoded once and the ``B x n_cls`` short class suffixes (cut after the last EOT)
  attend to it; gradients from cotangents at the text features; SGD step.

Each variant runs in a fresh subprocess.  Step memory excludes one-off set-up (ours: the fast image pass's
prepared copy of the image tower, made before the steps).  On CUDA it is the peak of
``torch.cuda.max_memory_allocated`` during the steps minus the allocation before them; on the CPU the peak RSS
during the steps minus the RSS before them.
One warm-up step (also the check that both compute the same gradients), then ``--reps`` timed steps (median).
Usage: ``python benchmarks/bench_cocoop.py [--reps N] [--model M] [--classes C] [--batch B] [--device D]
[--threads T]`` (on a CPU shared with other work, ``--threads 1`` avoids idle threads spinning).
The last two lines are ``cocoop speedup: <r>x`` and ``cocoop memory ratio: <r>x``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from steps import CIFAR100 as CLASSNAMES  # noqa: E402
from steps import peak_rss_mb, rss_mb  # noqa: E402


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"

LR, MOMENTUM, WEIGHT_DECAY = 0.002, 0.9, 5e-4
VARIANTS = ("plain", "ours")




def cocoop_reference_step(backbone, learner, images, labels):
    """The reference's CoCoOp forward and loss: B x n_cls prompts at 77 tokens, one image at a time."""
    import torch
    import torch.nn.functional as F

    model = backbone.model
    img = F.normalize(model.encode_image(images), dim=-1)
    shift = learner.meta_net(img)
    prefix, suffix = learner.token_prefix, learner.token_suffix
    logits = []
    for b in range(img.shape[0]):
        ctx = (learner.ctx + shift[b]).unsqueeze(0).expand(learner.n_cls, -1, -1)
        prompts = torch.cat([prefix, ctx, suffix], dim=1)
        text = F.normalize(learner.encoder.encode_embeddings(prompts, learner.eot, truncate=False), dim=-1)
        logits.append(backbone.logit_scale * img[b] @ text.t())
    return F.cross_entropy(torch.stack(logits), labels)


def run_variant(variant: str, args: argparse.Namespace, out: Path) -> None:
    import torch

    from prograd_pl.methods.cocoop import CoCoOp
    from prograd_pl.methods.module import PromptModule
    from prograd_pl.models.backbone import load_backbone
    from prograd_pl.models.conditional_prompt import ConditionalPromptLearner

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    names = CLASSNAMES[: args.classes]
    torch.manual_seed(0)
    # the reference encodes images with open_clip's own tower; ours with the project's fast frozen pass
    backbone = load_backbone(args.model, None, device=device, fast_image=variant == "ours")
    learner = ConditionalPromptLearner(backbone, names, generator=torch.Generator().manual_seed(0)).to(device)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, backbone.image_size, backbone.image_size, generator=gen).to(device)
    labels = torch.randint(0, len(names), (args.batch,), generator=gen).to(device)
    params = learner.learned_parameters()
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    if variant == "plain":

        def step() -> list:
            loss = cocoop_reference_step(backbone, learner, images, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad.detach().clone() for p in params]
            opt.step()
            return grads

    else:
        module = PromptModule(CoCoOp(backbone, names, prompt=learner, encoding="auto")).to(device)
        module.train()
        module.image_features(images)  # set-up: the fast image pass prepares its folded copy of the tower once

        def step() -> list:
            grads, _ = module.compute_update(images, labels)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            return grads

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    start = [p.detach().cpu().clone() for p in params]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_mb()
    first = [g.cpu() for g in step()]  # warm-up and equivalence check
    sync()
    times, cpu_times = [], []
    for _ in range(args.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else peak_rss_mb() - base
    torch.save({"start": start, "grads": first}, out.with_suffix(".pt"))
    out.write_text(json.dumps({"times": times, "median": statistics.median(times), "peak_delta_mb": peak,
                               "cpu_median": statistics.median(cpu_times), "threads": torch.get_num_threads()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="timed steps per variant after 1 warm-up (default 2)")
    parser.add_argument("--model", default="RN50-quickgelu", help="open_clip architecture (random weights)")
    parser.add_argument("--classes", type=int, default=100, help="number of classes (at most 100)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reps < 1 or not 1 <= args.classes <= len(CLASSNAMES) or args.batch < 1:
        parser.error("--reps and --batch must be at least 1, --classes between 1 and 100")
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.variant:
        run_variant(args.variant, args, args.out)
        return
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU: {_cpu_name()}, {os.cpu_count()} cores"
    print(
        f"CoCoOp step benchmark: {args.model} (random weights), {args.classes} classes, batch {args.batch}, "
        f"n_ctx 4, fp32, {where}; torch {torch.__version__}"
    )
    print(f"1 warm-up step + {args.reps} timed steps per variant, each variant in a fresh subprocess", flush=True)
    wall = time.perf_counter()
    res, tensors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in VARIANTS:
            out = Path(tmp) / f"{v}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", v, "--reps", str(args.reps),
                   "--model", args.model, "--classes", str(args.classes), "--batch", str(args.batch),
                   "--device", args.device, "--out", str(out)]  # fmt: skip
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            subprocess.run(cmd, check=True)
            res[v] = json.loads(out.read_text())
            tensors[v] = torch.load(out.with_suffix(".pt"))
            print(f"  {v}: {res[v]['median']:.3f} s/step (median of {' '.join(f'{t:.2f}' for t in res[v]['times'])}), "
                  f"process CPU {res[v]['cpu_median']:.2f} s/step, step memory {res[v]['peak_delta_mb']:.0f} MB",
                  flush=True)  # fmt: skip
    p, o = tensors["plain"], tensors["ours"]
    same_start = all(bool((a == b).all()) for a, b in zip(p["start"], o["start"]))
    rel = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(p["grads"], o["grads"]))
    print(f"same start: {same_start}; first-step gradients (ctx, meta-net), max |diff| / max |grad|: {rel:.2e}")
    print(f"torch threads: {res['ours']['threads']}; wall time {time.perf_counter() - wall:.1f} s")
    if args.device == "cpu":
        print("load average at end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print(f"speedup in process CPU time per step: {res['plain']['cpu_median'] / res['ours']['cpu_median']:.2f}x")
    print(f"cocoop speedup: {res['plain']['median'] / res['ours']['median']:.2f}x")
    print(f"cocoop memory ratio: {res['plain']['peak_delta_mb'] / max(res['ours']['peak_delta_mb'], 1e-3):.2f}x")


if __name__ == "__main__":
    main()
