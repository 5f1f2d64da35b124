"""The step benchmark on one GPU: RN50 and ViT-B/16, 100 and 1000 classes, fp32 and bf16 (see gpu_check.sh).

Per setting: s/step and peak ``torch.cuda.max_memory_allocated`` of the plain reference-style step, our ProGrad
step and our CoOp step (``steps.py``), with the ratios of ``make bench``: speedup, prograd/coop and memory, and our
ProGrad step with the other backward (sequential; twin is the GPU default).  TF32 is off: fp32 means fp32.
Without a GPU it runs the same code on the CPU with the tiny test model (a check that the script works; the
figures mean nothing).  Usage: ``python benchmarks/gpu_check.py [--reps N] [--cpu]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # CPU: process peak RSS


def reset_peak(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(step, reps: int, device) -> dict:
    from steps import timed

    reset_peak(device)
    t = timed(step, reps, device)
    return {"s": t["s"], "peak": peak_bytes(device)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="the CPU fallback even when a GPU is present")
    parser.add_argument("--compile", action="store_true", help="also time our step with compile=reduce-overhead")
    args = parser.parse_args()
    from steps import build_case, our_step, plain_step

    gpu = torch.cuda.is_available() and not args.cpu
    if gpu:
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
        models, class_counts, batch = ("RN50-quickgelu", "ViT-B-16-quickgelu"), (100, 1000), 32
        print(f"GPU check on {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    else:
        device = "cpu"
        torch.set_num_threads(1)  # the tiny model gains nothing from threads; a loaded machine loses a lot
        models, class_counts, batch = ("prograd-tiny",), (10,), 4
        print(
            "GPU check: no GPU, CPU fallback with the tiny model (the figures only show that it runs)",
            flush=True,
        )
    gib = 2**30
    wall = time.perf_counter()
    summary = []
    for model in models:
        for n in class_counts:
            for precision in ("fp32", "bf16"):
                case = build_case(model, n, batch, device=device)
                dev = case.device
                res = {}
                res["ours prograd"] = measure(our_step(case, "prograd", precision), args.reps, dev)
                res["ours coop"] = measure(our_step(case, "coop", precision), args.reps, dev)
                seq = measure(our_step(case, "prograd", precision, backward="sequential"), args.reps, dev)
                if args.compile:
                    compiled = our_step(case, "prograd", precision)
                    compiled.module.set_compile("reduce-overhead")
                    t0 = time.perf_counter()
                    compiled()
                    compile_s = time.perf_counter() - t0
                    res[f"ours compiled (first step {compile_s:.0f} s)"] = measure(compiled, args.reps, dev)
                res["plain"] = measure(plain_step(case, precision)[0], args.reps, dev)
                p, o, c = res["plain"], res["ours prograd"], res["ours coop"]
                line = (
                    f"{model:<15} {n:>5} classes {precision}: "
                    + " | ".join(f"{k} {v['s']:.4f} s/step {v['peak'] / gib:.2f} GiB" for k, v in res.items())
                    + f" || speedup {p['s'] / o['s']:.2f}x, prograd/coop {o['s'] / c['s']:.3f}x, "
                    f"memory ratio {p['peak'] / o['peak']:.2f}x; ours with the sequential backward "
                    f"{seq['s']:.4f} s/step ({seq['s'] / o['s']:.2f}x the default)"
                )
                print(line, flush=True)
                summary.append(line)
                del case, res
                reset_peak(dev)
    memory = "torch.cuda.max_memory_allocated" if gpu else "process peak RSS"
    print(f"peak memory = {memory} during the variant's steps (weights included; plain holds 2 CLIP copies)")
    print(
        "ours: the twin backward on GPUs (one forward and one backward over two copies of the context), the "
        "sequential one (one forward, two backward calls) on CPUs"
    )
    print(f"gpu check finished in {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
