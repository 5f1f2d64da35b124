"""Time and memory of a ProGrad training step on this CPU: the reference way ("plain") vs this project ("ours").

Four measurements, each in its own fresh subprocess so that peak memory (``ru_maxrss``) is its own:

1. **100 classes** (``step-plain``, ``step-ours``): random-weight open_clip ``RN50-quickgelu``, the CIFAR-100 class
   names, batch 32 of random 224 px images, ``n_ctx=16`` template init, fp32, SGD lr 0.002 momentum 0.9 weight
   decay 5e-4, lambda 1.  The whole step, plain vs ours (see ``steps.py``); our CoOp step on the same batch
   (``prograd/coop``); the frozen image pass before (open_clip as loaded) and after (BatchNorm folded,
   channels-last, inference mode), and the bf16 option.
2. **1000 classes** (``text-plain``, ``text-ours``): random-weight ``ViT-B-16-quickgelu`` (the architecture of
   OpenAI's ViT-B/16, the project's ``model=vit_b16``) with the 1000 ImageNet class names,
   the text side alone: class features plus both context gradients.  The plain 77-token variant is measured on
   the first 100 classes and scaled linearly to 1000 (its cost is linear in the classes); ours runs all 1000.
3. The **activation memory** of one full ProGrad step at batch 32 for ImageNet ViT-B/16, ours vs plain: the bytes
   of the tensors autograd saves for backward (each storage once, frozen weights excluded), the same on any
   device, i.e. the GPU-memory estimate of the activations.

One warm-up step (also the same-update check), then ``--reps`` timed steps; medians are reported.  Our ProGrad
and CoOp steps alternate (at least 9 pairs); ``prograd/coop`` is the median of the pairs' ratios.
Usage: ``python benchmarks/bench_step.py [--reps N] [--threads N] [--compile]`` (``--threads 1`` gives steadier
figures on a machine that other jobs load: intra-op threads that wait for descheduled peers slow the many small
text-side operations far more than the large convolutions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from steps import (  # noqa: E402
    activation_bytes,
    build_case,
    our_step,
    peak_rss_mb,
    plain_step,
    rss_mb,
    text_side,
    timed,
)

# BENCH_SMOKE=1 shrinks everything to the tiny test model (a check that the script runs, not a measurement)
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
STEP_MODEL, STEP_CLASSES = ("prograd-tiny", 10) if SMOKE else ("RN50-quickgelu", 100)
TEXT_MODEL, TEXT_CLASSES, TEXT_SLICE = ("prograd-tiny", 200, 20) if SMOKE else ("ViT-B-16-quickgelu", 1000, 100)
BATCH = 4 if SMOKE else 32
JOBS = ("step-plain", "step-ours", "text-plain", "text-ours", "ops-count")
OPS_MODEL, OPS_CLASSES, OPS_BATCH = ("prograd-tiny", (10, 100), 2) if SMOKE else ("RN50-quickgelu", (100, 1000), 2)




# ---------------------------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------------------------
def job_step(variant: str, reps: int, out: Path, compile_image: bool) -> dict:
    import torch

    t_setup = time.perf_counter()
    case = build_case(STEP_MODEL, STEP_CLASSES, BATCH, fast_image=variant == "ours")
    ctx = case.learner.ctx
    checksum = sum(float(p.double().sum()) for p in case.backbone.model.parameters())
    res: dict = {}
    if variant == "plain":
        step, parts = plain_step(case)
    else:
        step = our_step(case, "prograd")
        coop = our_step(case, "coop")
    t_setup = time.perf_counter() - t_setup
    rss_before = rss_mb()
    ctx0 = ctx.detach().clone()
    grad0, cos0 = step()  # warm-up, also the equivalence check
    grad0, cos0 = grad0.clone(), float(cos0)
    ctx1 = ctx.detach().clone()
    times, cpu_times, coop_times, coop_cpu = [], [], [], []
    if variant == "ours":
        coop()
    # ours: prograd and coop steps interleaved, so that load changes hit both alike; at least 9 pairs for the ratio
    for _ in range(reps if variant == "plain" else max(reps, 9)):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if variant == "ours":
            t0, c0 = time.perf_counter(), time.process_time()
            coop()
            coop_times.append(time.perf_counter() - t0)
            coop_cpu.append(time.process_time() - c0)
    peak_after = peak_rss_mb()

    if variant == "plain":
        breakdown = {k: statistics.median(v[1:]) for k, v in parts.items()}  # timed reps only
    else:
        res.update(_image_pass_and_breakdown(case, step, reps, compile_image))
        breakdown = res.pop("breakdown")
        res["coop_median"] = statistics.median(coop_times)
        res["coop_cpu_median"] = statistics.median(coop_cpu)
        res["coop_times"] = coop_times
        res["coop_cpu_times"] = coop_cpu
    torch.save({"ctx0": ctx0, "ctx1": ctx1, "grad": grad0}, out.with_suffix(".pt"))
    res.update(
        times=times,
        median=statistics.median(times),
        cpu_median=statistics.median(cpu_times),
        cpu_times=cpu_times,
        setup_s=t_setup,
        peak_mb=peak_after,
        step_peak_delta_mb=peak_after - rss_before,
        breakdown=breakdown,
        cos=cos0,
        checksum=checksum,
        threads=torch.get_num_threads(),
    )
    return res


def _image_pass_and_breakdown(case, step, reps: int, compile_image: bool) -> dict:
    """The image pass before/after and the pieces of our step, timed interleaved with whole steps."""
    import copy

    import torch

    from prograd_pl.models.backbone import _open_clip_class, configure_image_pass

    module, model, images = step.module, case.backbone.model, case.images
    bf16_model = copy.deepcopy(model)
    configure_image_pass(bf16_model, fast=True, bf16=True)
    open_clip_forward = _open_clip_class(model.visual).forward

    def before() -> None:
        with torch.no_grad():
            open_clip_forward(model.visual, images)

    def bf16() -> None:
        with torch.no_grad():
            bf16_model.encode_image(images)

    pieces = {
        "step": step,
        "ours (fp32, exact)": lambda: module.image_features(images),
        "before (open_clip as loaded)": before,
        "option model.image_bf16": bf16,
        "text forward": lambda: module.method.class_features(),
    }
    for fn in pieces.values():  # warm-up
        fn()
    walls: dict[str, list[float]] = {k: [] for k in pieces}
    cpus: dict[str, list[float]] = {k: [] for k in pieces}
    for _ in range(reps):
        for name, fn in pieces.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in walls.items()}
    image = {k: {"s": med[k], "cpu_s": statistics.median(cpus[k])} for k in list(pieces)[1:4]}
    if compile_image:
        configure_image_pass(bf16_model, fast=True, compile=True)
        t0 = time.perf_counter()
        bf16_model.encode_image(images)
        compile_s = time.perf_counter() - t0
        t = timed(lambda: bf16_model.encode_image(images), reps, case.device)
        image[f"option model.image_compile (compile {compile_s:.0f} s)"] = {"s": t["s"], "cpu_s": t["cpu_s"]}
    img_s, text_s = med["ours (fp32, exact)"], med["text forward"]
    breakdown = {
        "whole step (timed with the pieces below)": med["step"],
        "image encoding (one pass)": img_s,
        "text forward (shared prefix, packed)": text_s,
        "losses, 2 grads (one text backward each), projection, SGD": max(0.0, med["step"] - img_s - text_s),
    }
    return {"image_pass": image, "breakdown": breakdown}


def job_text(variant: str, reps: int, out: Path) -> dict:
    import torch

    n = TEXT_SLICE if variant == "plain" else TEXT_CLASSES
    t_setup = time.perf_counter()
    case = build_case(TEXT_MODEL, n, BATCH, fast_image=variant == "ours")
    model = case.backbone.model
    t_setup = time.perf_counter() - t_setup
    res: dict = {"classes": n, "setup_s": t_setup}
    ctx0 = case.learner.ctx.detach().clone()
    run = text_side(case, variant)
    rss_before = rss_mb()
    t = timed(run, reps, case.device)  # first, so that the peak is this work's alone
    peak_after = peak_rss_mb()
    res.update(median=t["s"], cpu_median=t["cpu_s"], times=t["walls"])
    res["peak_delta_mb"] = peak_after - rss_before
    res["peak_mb"] = peak_after
    res["text_activation_bytes"] = activation_bytes(run, model, case.learner)
    # activation memory of one full ProGrad step (image passes included: frozen, they save nothing)
    step = plain_step(case)[0] if variant == "plain" else our_step(case, "prograd")
    res["step_activation_bytes"] = activation_bytes(step, model, case.learner)
    res["step_activation_bytes_image_only"] = activation_bytes(lambda: model.encode_image(case.images), model)
    del step
    with torch.no_grad():
        case.learner.ctx.copy_(
            ctx0
        )  # the step moved the context; the gradient check below starts from the init
    # the same-gradients check on the first 100 classes
    if variant == "ours":
        small = build_case(TEXT_MODEL, TEXT_SLICE, BATCH)
        grads = text_side(small, "ours")()
    else:
        grads = run()
    torch.save({"grads": [g.detach() for g in grads]}, out.with_suffix(".pt"))
    return res


def job_ops(out: Path) -> dict:
    """The GPU-cost proxies, counted on this CPU (op_count.py): kernel ops and host syncs of one ProGrad step on
    the path a CUDA device runs (the twin backward, forced here), ours at two class counts and the reference;
    the CPU default path (sequential backward) too; graph breaks of the step's forward part; casts in bf16."""
    import torch
    from op_count import count_ops, graph_breaks

    res: dict = {"model": OPS_MODEL, "batch": OPS_BATCH, "classes": list(OPS_CLASSES)}
    for n in OPS_CLASSES:
        case = build_case(OPS_MODEL, n, OPS_BATCH)
        for path in ("twin", "sequential"):
            step = our_step(case, "prograd", backward=path)
            step()  # warm-up: the prepared image pass, the teacher's class features
            c = count_ops(step)
            res[f"ours-{path}-{n}"] = {"ops": c.ops, "syncs": c.syncs, "sync_ops": dict(c.sync_ops)}
        if n == OPS_CLASSES[0]:
            coop = our_step(case, "coop")
            coop()
            res["coop_ops"] = count_ops(coop).ops
            module = step.module
            twins = case.learner.ctx.detach().unsqueeze(0).repeat(2, 1, 1).requires_grad_(True)
            img = module.image_features(case.images)
            teacher = module.method.teacher()
            res["graphs"], res["graph_breaks"] = graph_breaks(
                module.forward_part, twins, img, case.labels, teacher
            )
            # last: the bf16 module casts this case's shared text tower, the reference switches its fast image pass off
            bf16 = our_step(case, "prograd", precision="bf16", backward="twin")
            bf16()
            res["bf16_casts"] = count_ops(bf16).casts
            res["bf16_graphs"], res["bf16_graph_breaks"] = graph_breaks(
                bf16.module.forward_part, twins, img, case.labels, teacher
            )
            plain, _ = plain_step(case)
            plain()
            c = count_ops(plain)
            res["plain"] = {"ops": c.ops, "syncs": c.syncs}
        del case
    torch.save({}, out.with_suffix(".pt"))
    return res


def run_job(job: str, reps: int, out: Path, compile_image: bool) -> None:
    kind, variant = job.split("-")
    if kind == "ops":
        res = job_ops(out)
    elif kind == "step":
        res = job_step(variant, reps, out, compile_image)
    else:
        res = job_text(variant, reps, out)
    out.write_text(json.dumps(res))


# ---------------------------------------------------------------------------------------------------------------
# parent: run the jobs in fresh processes, compare, print
# ---------------------------------------------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reps", type=int, default=3, help="timed steps per variant after 1 warm-up (default 3)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the torch.compile image-pass option"
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads in every job (default: torch's)")
    parser.add_argument("--job", choices=JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.job:
        run_job(args.job, args.reps, args.out, args.compile)
        return

    wall = time.perf_counter()
    print(
        f"ProGrad step benchmark, CPU, fp32, random weights, batch {BATCH}, n_ctx 16 template init\n"
        f"  whole step: {STEP_MODEL}, {STEP_CLASSES} classes (CIFAR-100 names), 224 px\n"
        f"  text side:  {TEXT_MODEL}, {TEXT_CLASSES} ImageNet class names (plain measured on {TEXT_SLICE}, scaled)"
    )
    print(
        f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads per job"
    )
    print(f"load average at start (1/5/15 min): {_load()}")
    print(
        f"1 warm-up + {args.reps} timed repetitions per variant, each job in a fresh subprocess", flush=True
    )
    res, tensors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for job in JOBS:
            out = Path(tmp) / f"{job}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--job", job, "--reps", str(args.reps)]
            extra = (["--compile"] if args.compile else []) + (
                ["--threads", str(args.threads)] if args.threads else []
            )
            subprocess.run([*cmd, "--out", str(out), *extra], check=True)
            res[job] = json.loads(out.read_text())
            tensors[job] = torch.load(out.with_suffix(".pt"))
            print(f"  {job}: done ({time.perf_counter() - wall:.0f} s so far, load {_load()})", flush=True)

    sp, so = res["step-plain"], res["step-ours"]
    print(f"\n== whole step, {STEP_MODEL}, {STEP_CLASSES} classes (torch threads: {so['threads']}) ==")
    print(
        f"{'variant':<13} {'s/step':>8} {'steps (s)':>22} {'CPU s/step':>11} {'peak RSS MB':>12} {'step peak Δ MB':>15}"
    )
    for name, r in (("plain", sp), ("ours prograd", so)):
        steps = " ".join(f"{t:.2f}" for t in r["times"])
        print(
            f"{name:<13} {r['median']:>8.3f} {steps:>22} {r['cpu_median']:>11.2f} {r['peak_mb']:>12.0f} "
            f"{r['step_peak_delta_mb']:>15.0f}"
        )
    steps = " ".join(f"{t:.2f}" for t in so["coop_times"])
    print(f"{'ours coop':<13} {so['coop_median']:>8.3f} {steps:>22} {so['coop_cpu_median']:>11.2f}")
    print(
        "  CPU s/step = process CPU time (all threads) per step, less sensitive to other load on the machine"
    )
    print("  peak RSS = whole process (plain includes the teacher's second CLIP copy, as the reference)")
    for name, r in (("plain", sp), ("ours prograd", so)):
        print(f"breakdown, {name} (s):")
        for part, t in r["breakdown"].items():
            print(f"  {part:<60} {t:8.3f}")
    print(f"frozen image pass, batch {BATCH} (s, median; CPU s):")
    for name, t in so["image_pass"].items():
        print(f"  {name:<60} {t['s']:8.3f} {t['cpu_s']:8.2f}")

    p, o = tensors["step-plain"], tensors["step-ours"]
    same_init = bool(torch.equal(p["ctx0"], o["ctx0"])) and sp["checksum"] == so["checksum"]
    upd_p, upd_o = p["ctx1"] - p["ctx0"], o["ctx1"] - o["ctx0"]
    print("same update check (first step from the same init ctx and batch):")
    print(f"  same weights and init ctx: {same_init}")
    print(f"  grad cos(g_ce, g_kl): plain {sp['cos']:+.6f}, ours {so['cos']:+.6f}")
    print(f"  max |update diff| / max |update|: {float((upd_p - upd_o).abs().max() / upd_p.abs().max()):.3e}")
    print(
        f"  max |grad diff| / max |grad|: {float((p['grad'] - o['grad']).abs().max() / p['grad'].abs().max()):.3e}"
    )

    tp, to = res["text-plain"], res["text-ours"]
    k = TEXT_CLASSES / tp["classes"]
    plain_s, plain_cpu, plain_mb = tp["median"] * k, tp["cpu_median"] * k, tp["peak_delta_mb"] * k
    gib = 2**30
    print(f"\n== text side, {TEXT_MODEL}, {TEXT_CLASSES} classes: class features + both context gradients ==")
    print(f"{'variant':<30} {'s':>9} {'CPU s':>9} {'peak Δ MB':>10} {'saved tensors GiB':>18}")
    print(
        f"{f'plain ({TEXT_SLICE} classes, measured)':<30} {tp['median']:>9.2f} {tp['cpu_median']:>9.2f} "
        f"{tp['peak_delta_mb']:>10.0f} {tp['text_activation_bytes'] / gib:>18.3f}"
    )
    print(
        f"{f'plain (x{k:.0f}, scaled)':<30} {plain_s:>9.2f} {plain_cpu:>9.2f} {plain_mb:>10.0f} "
        f"{tp['text_activation_bytes'] * k / gib:>18.3f}"
    )
    print(
        f"{f'ours ({TEXT_CLASSES} classes, measured)':<30} {to['median']:>9.2f} {to['cpu_median']:>9.2f} "
        f"{to['peak_delta_mb']:>10.0f} {to['text_activation_bytes'] / gib:>18.3f}"
    )
    print("  plain is linear in the classes (every prompt is its own 77-token sequence), hence the scaling")
    print("  peak Δ = peak RSS during the timed runs - RSS before them (fresh process)")
    gp, go = tensors["text-plain"]["grads"], tensors["text-ours"]["grads"]
    rel = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(gp, go))
    print(f"  same gradients on the first {TEXT_SLICE} classes: max |diff| / max |grad| = {rel:.3e}")

    act_plain, act_ours = tp["step_activation_bytes"] * k, to["step_activation_bytes"]
    print(
        f"\n== activation memory of one full ProGrad step, {TEXT_MODEL}, ImageNet ({TEXT_CLASSES} classes), batch {BATCH} =="
    )
    print(
        f"  plain: {act_plain / gib:.2f} GiB (measured on {tp['classes']} classes: {tp['step_activation_bytes'] / gib:.3f}"
        f" GiB, x{k:.0f})"
    )
    print(f"  ours:  {act_ours / gib:.2f} GiB")
    print(
        "  = bytes autograd saves for the backward (each storage once, frozen weights excluded); the frozen image"
        f" passes save {max(tp['step_activation_bytes_image_only'], to['step_activation_bytes_image_only'])} bytes"
    )
    print(f"  GPU-memory estimate of ours (activations < 16 GB goal): {act_ours / 1e9:.2f} GB")

    print(f"\nload average at end (1/5/15 min): {_load()}")
    print(f"wall time of the whole benchmark: {time.perf_counter() - wall:.1f} s")
    # each ProGrad step is timed right before its CoOp step: the median of the pairs' ratios follows the load, the
    # ratio of the two medians can pair a fast step of one with a slow step of the other
    pair_ratio = statistics.median(a / b for a, b in zip(so["times"], so["coop_times"]))
    pair_cpu_ratio = statistics.median(a / b for a, b in zip(so["cpu_times"], so["coop_cpu_times"]))
    print(
        f"prograd/coop: median of the {len(so['coop_times'])} interleaved pairs' ratios {pair_ratio:.3f}x "
        f"(CPU time {pair_cpu_ratio:.3f}x); ratio of the medians {so['median'] / so['coop_median']:.3f}x"
    )
    print(
        f"ratios in CPU time: prograd/coop {pair_cpu_ratio:.3f}x, "
        f"1000 classes {plain_cpu / to['cpu_median']:.2f}x, saved-tensor memory 1000 classes "
        f"{tp['text_activation_bytes'] * k / to['text_activation_bytes']:.2f}x"
    )
    print(f"prograd/coop step: {pair_ratio:.3f}x")
    ops = res["ops-count"]
    small, large = ops["classes"]
    print(
        f"\n== GPU-cost proxies, counted on this CPU: {ops['model']}, random weights, batch {ops['batch']}, after one"
        " warm-up step; the path a CUDA device runs (twin backward, forced here) =="
    )
    seq_s, seq_l = ops[f"ours-sequential-{small}"], ops[f"ours-sequential-{large}"]
    print(
        f"  CPU default path (sequential backward): {seq_s['ops']} ops at {small} classes, {seq_l['ops']} at "
        f"{large}; syncs {seq_s['syncs']} / {seq_l['syncs']}"
    )
    print(
        f"  reference: {ops['plain']['syncs']} host syncs; graphs of the forward part: {ops['graphs']} (bf16: "
        f"{ops['bf16_graphs']} graphs, {ops['bf16_graph_breaks']} breaks)"
    )
    twin_s, twin_l = ops[f"ours-twin-{small}"], ops[f"ours-twin-{large}"]
    print(
        f"kernel ops per ProGrad step ({small} classes): ours {twin_s['ops']} / reference {ops['plain']['ops']} = "
        f"{twin_s['ops'] / ops['plain']['ops']:.2f}x"
    )
    print(f"kernel ops per ProGrad step ({large} classes): ours {twin_l['ops']}")
    print(
        f"  our CoOp step ({small} classes): {ops['coop_ops']} ops; ProGrad/CoOp in kernel ops "
        f"{twin_s['ops'] / ops['coop_ops']:.2f}x (the GPU's launch-bound proxy of that ratio)"
    )
    print(f"host syncs per ProGrad step: {max(twin_s['syncs'], twin_l['syncs'])}")
    print(f"graph breaks (torch.compile fullgraph): {ops['graph_breaks']}")
    print(f"bf16 cast ops per step: {ops['bf16_casts']}")
    print(f"speedup 1000 classes: {plain_s / to['median']:.2f}x")
    print(f"memory ratio 1000 classes: {plain_mb / max(to['peak_delta_mb'], 1.0):.2f}x")
    print(
        f"speedup: {sp['median'] / so['median']:.2f}x (CPU time {sp['cpu_median'] / so['cpu_median']:.2f}x)"
    )


if __name__ == "__main__":
    main()
