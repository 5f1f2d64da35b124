"""Where one training step's time goes: image pass, text side, kernel launches and host syncs (torch.profiler).

On a GPU (RN50-quickgelu, 100 and 1000 classes, batch 32, fp32 without TF32) it prints, per step variant (our
ProGrad step, our CoOp step, the reference-style ProGrad step): the profiled wall time, the time the device was busy,
and per step the kernel launches, stream synchronisations, ``.item()`` calls and ``nonzero`` calls, then the top
operators by host time and by device time.  A step whose device-busy time is far below its wall time is bound by
the host (launches, syncs), not by the GPU.  Without a GPU (or with --cpu) it runs the same code on the tiny model.
Usage: ``python benchmarks/profile_step.py [--cpu] [--rows N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COUNTED = (
    "cudaLaunchKernel",
    "cudaLaunchKernelExC",
    "cudaStreamSynchronize",
    "cudaMemcpyAsync",
    "aten::item",
    "aten::nonzero",
)


def main() -> None:
    import torch
    from steps import build_case, our_step, plain_step, text_side, timed
    from torch.profiler import ProfilerActivity, profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the CPU fallback even when a GPU is present")
    parser.add_argument("--rows", type=int, default=12, help="rows of each operator table")
    args = parser.parse_args()
    gpu = torch.cuda.is_available() and not args.cpu
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        model, class_counts, batch, device = "RN50-quickgelu", (100, 1000), 32, "cuda"
    else:
        torch.set_num_threads(1)
        model, class_counts, batch, device = "prograd-tiny", (10,), 4, "cpu"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    for n in class_counts:
        case = build_case(model, n, batch, device=device)
        dev = case.device

        def image_pass(case=case) -> None:
            with torch.no_grad():
                case.backbone.model.encode_image(case.images)

        t_img = timed(image_pass, 5, dev)["s"]
        t_ours = timed(text_side(case, "ours"), 5, dev)["s"]
        t_plain = timed(text_side(case, "plain"), 5, dev)["s"]
        print(
            f"== {model}, {n} classes, batch {batch}, {dev.type}: image pass {t_img * 1e3:.1f} ms | text side "
            f"(features + both gradients) ours {t_ours * 1e3:.1f} ms, reference {t_plain * 1e3:.1f} ms",
            flush=True,
        )
        # the reference step last: plain_step switches the shared tower's fast image pass off
        for name in ("our ProGrad step", "our CoOp step", "reference ProGrad step"):
            if name == "our ProGrad step":
                step = our_step(case, "prograd")
            elif name == "our CoOp step":
                step = our_step(case, "coop")
            else:
                step = plain_step(case)[0]
            for _ in range(3):
                step()
            if gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with profile(activities=activities) as prof:
                for _ in range(3):
                    step()
                if gpu:
                    torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / 3
            ops = prof.key_averages()
            busy = sum(getattr(e, "self_device_time_total", 0) for e in ops) / 3 / 1e3
            counts = {k: sum(e.count for e in ops if e.key == k) / 3 for k in COUNTED}
            per_step = ", ".join(f"{k} {v:.0f}" for k, v in counts.items() if v)
            print(f"-- {name}: profiled wall {wall * 1e3:.1f} ms, device busy {busy:.1f} ms; per step: {per_step}")
            print(ops.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=50))
            if gpu:
                print(ops.table(sort_by="self_device_time_total", row_limit=args.rows, max_name_column_width=50))
        del case


if __name__ == "__main__":
    main()
