"""Measures the compute kernels of a DeepSeek-V3 decode layer on one GPU.

- `expert-ffn`: the routed experts' grouped FFN (H 7168, I 2048: gate+up GEMM, SiLU-and-mul,
  down GEMM) for 1...32 local experts at 1...512 tokens per expert, every expert equally
  loaded. FP8 through `torch._scaled_grouped_mm` (rowwise scales; DeepSeek runs FP8 expert
  GEMMs) and BF16 through `torch._grouped_mm`; where a grouped kernel refuses a shape the row
  says which stand-in ran (`kernel` column).
- `gemm`: dense GEMMs of the layer at 1...512 tokens, FP8 (`torch._scaled_mm`, rowwise) and
  BF16 (`torch.mm`): the shared expert's FFN, the dense layers' FFN (I 18432), and the MLA
  projections (q_a, q_b, kv_a, o_proj) and the routing gate.
- `mla-decode`: core MLA attention of decode with absorbed weights, BF16, unfused (batched
  GEMMs q.K^T over 576 latent+rope dims, softmax, P.V over 512): a stand-in for FlashMLA,
  which the machine does not have; it reads the same KV-cache bytes.

Each point: the median (and p10, p90) of `--reps` timed runs (CUDA events) after warm-up,
with the L2 cache flushed before each run (weights come from HBM, as in a decode step whose
other layers evict them) and a GPU spin before it, so that the host has queued the run and
the time is the GPU's alone. Writes `compute.csv` and `compute-run.json` to `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
import traceback

import torch
import torch.nn.functional as F

H, I_MOE, I_DENSE = 7168, 2048, 18432
COLUMNS = ["table", "name", "dtype", "kernel", "experts", "tokens_per_expert", "tokens", "k", "n", "kv_length",
           "flops", "bytes", "us_p50", "us_p10", "us_p90", "reps", "note"]


class Bench:
    def __init__(self, reps: int, warmup: int):
        self.reps, self.warmup = reps, warmup
        self.flush = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device="cuda")

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.reps)]
        for s, e in events:
            self.flush.zero_()
            # A GPU spin (~0.5 ms) so that the host has queued the whole run before it starts:
            # the time is the kernels' own, not the host's launch rate (decode replays a CUDA
            # graph, so the host does not pace it either).
            torch.cuda._sleep(1_000_000)
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        t = sorted(s.elapsed_time(e) * 1000 for s, e in events)

        def q(p):
            pos = (len(t) - 1) * p
            lo, hi = math.floor(pos), math.ceil(pos)
            return t[lo] + (t[hi] - t[lo]) * (pos - lo)

        return q(0.5), q(0.1), q(0.9)


def fp8_rowwise(x):
    """Rowwise FP8 E4M3 quantisation: (values, float32 scale per row)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-4)
    scale = amax / 448.0
    return (x.float() / scale).to(torch.float8_e4m3fn), scale.squeeze(-1).contiguous()


def expert_ffn(bench, experts: int, m: int, dtype: str, w):
    """One grouped FFN of `experts` experts with `m` tokens each; returns (kernel, times) or raises."""
    rows = experts * m
    x = torch.randn((rows, H), dtype=torch.bfloat16, device="cuda") * 0.1
    offs = torch.arange(m, rows + 1, m, dtype=torch.int32, device="cuda")[:experts]
    if dtype == "bf16":
        w1, w2 = w["bf16_w1"][:experts], w["bf16_w2"][:experts]  # [G, H, 2I], [G, I, H]

        def run():
            h = torch._grouped_mm(x, w1, offs=offs)
            a = F.silu(h[:, :I_MOE]) * h[:, I_MOE:]
            return torch._grouped_mm(a, w2, offs=offs)

        run()
        return "torch._grouped_mm", bench(run)
    xq, sx = fp8_rowwise(x)
    w1, s1 = w["fp8_w1"][:experts], w["fp8_s1"][:experts]  # [G, 2I, H] row-major -> transposed view
    w2, s2 = w["fp8_w2"][:experts], w["fp8_s2"][:experts]

    def run():
        h = torch._scaled_grouped_mm(xq, w1.transpose(-2, -1), sx, s1, offs=offs, out_dtype=torch.bfloat16)
        a = F.silu(h[:, :I_MOE]) * h[:, I_MOE:]
        aq, sa = fp8_rowwise(a)
        return torch._scaled_grouped_mm(aq, w2.transpose(-2, -1), sa, s2, offs=offs, out_dtype=torch.bfloat16)

    run()
    return "torch._scaled_grouped_mm", bench(run)


def expert_ffn_loop(bench, experts: int, m: int, dtype: str, w):
    """Stand-in when no grouped kernel takes the shape: one GEMM pair per expert (BF16 torch.mm)."""
    x = torch.randn((experts, m, H), dtype=torch.bfloat16, device="cuda") * 0.1
    w1, w2 = w["bf16_w1"][:experts], w["bf16_w2"][:experts]

    def run():
        h = torch.bmm(x, w1)
        a = F.silu(h[..., :I_MOE]) * h[..., I_MOE:]
        return torch.bmm(a, w2)

    run()
    return "torch.bmm (bf16, per-expert batched)", bench(run)


def dense(bench, t: int, k: int, n: int, dtype: str):
    x = torch.randn((t, k), dtype=torch.bfloat16, device="cuda") * 0.1
    wt = torch.randn((n, k), dtype=torch.bfloat16, device="cuda") * 0.02
    if dtype == "bf16":
        b = wt.t()
        run = lambda: torch.mm(x, b)  # noqa: E731
        run()
        return "torch.mm", bench(run)
    xq, sx = fp8_rowwise(x)
    wq, sw = fp8_rowwise(wt)
    sx2, sw2 = sx.view(-1, 1), sw.view(1, -1)
    run = lambda: torch._scaled_mm(xq, wq.t(), scale_a=sx2, scale_b=sw2, out_dtype=torch.bfloat16)  # noqa: E731
    run()
    return "torch._scaled_mm", bench(run)


def dense_ffn(bench, t: int, inter: int, dtype: str):
    """Gate+up GEMM, SiLU-and-mul, down GEMM of a dense FFN (shared expert: inter 2048)."""
    x = torch.randn((t, H), dtype=torch.bfloat16, device="cuda") * 0.1
    w1 = torch.randn((2 * inter, H), dtype=torch.bfloat16, device="cuda") * 0.02
    w2 = torch.randn((H, inter), dtype=torch.bfloat16, device="cuda") * 0.02
    if dtype == "bf16":
        b1, b2 = w1.t(), w2.t()

        def run():
            h = torch.mm(x, b1)
            a = F.silu(h[:, :inter]) * h[:, inter:]
            return torch.mm(a, b2)

        run()
        return "torch.mm", bench(run)
    xq, sx = fp8_rowwise(x)
    w1q, s1 = fp8_rowwise(w1)
    w2q, s2 = fp8_rowwise(w2)

    def run():
        h = torch._scaled_mm(xq, w1q.t(), scale_a=sx.view(-1, 1), scale_b=s1.view(1, -1), out_dtype=torch.bfloat16)
        a = F.silu(h[:, :inter]) * h[:, inter:]
        aq, sa = fp8_rowwise(a)
        return torch._scaled_mm(aq, w2q.t(), scale_a=sa.view(-1, 1), scale_b=s2.view(1, -1), out_dtype=torch.bfloat16)

    run()
    return "torch._scaled_mm", bench(run)


def mla_decode(bench, t: int, kv_len: int):
    heads, latent, rope = 128, 512, 64
    q = torch.randn((t, heads, latent + rope), dtype=torch.bfloat16, device="cuda") * 0.1
    kv = torch.randn((t, kv_len, latent + rope), dtype=torch.bfloat16, device="cuda") * 0.1
    scale = 1 / math.sqrt(128 + rope)

    def run():
        s = torch.bmm(q, kv.transpose(1, 2)) * scale
        p = torch.softmax(s.float(), dim=-1).to(torch.bfloat16)
        return torch.bmm(p, kv[:, :, :latent])

    run()
    return "torch.bmm + softmax (unfused)", bench(run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=240, help="stop starting new points after this many seconds")
    p.add_argument("--quick", action="store_true", help="a few points only (a smoke test)")
    args = p.parse_args()
    torch.cuda.set_device(0)
    bench = Bench(args.reps, args.warmup)
    begun = time.time()
    rows, errors = [], []

    def add(table, name, dtype, kernel, times, flops, nbytes, **kw):
        row = {"table": table, "name": name, "dtype": dtype, "kernel": kernel, "flops": f"{flops:.0f}", "bytes": f"{nbytes:.0f}",
               "us_p50": f"{times[0]:.3f}", "us_p10": f"{times[1]:.3f}", "us_p90": f"{times[2]:.3f}", "reps": args.reps}
        row.update(kw)
        rows.append(row)
        print(f"{time.time() - begun:6.1f}s {table} {name} {dtype} {kw} -> {times[0]:.2f} us ({kernel})", flush=True)

    def attempt(label, fn):
        try:
            return fn()
        except Exception as exc:
            msg = f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            errors.append(msg)
            print("ERROR", msg, flush=True)
            return None

    expert_counts = (1, 2, 4, 8, 16, 32)
    per_expert = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    tokens = (1, 4, 16, 32, 64, 128, 256, 512)
    if args.quick:
        expert_counts, per_expert, tokens = (2, 8), (1, 64), (1, 128)
    gmax = max(expert_counts)
    w = {}
    w["bf16_w1"] = torch.randn((gmax, H, 2 * I_MOE), dtype=torch.bfloat16, device="cuda") * 0.02
    w["bf16_w2"] = torch.randn((gmax, I_MOE, H), dtype=torch.bfloat16, device="cuda") * 0.02
    q1, s1 = fp8_rowwise(torch.randn((gmax, 2 * I_MOE, H), dtype=torch.bfloat16, device="cuda") * 0.02)
    q2, s2 = fp8_rowwise(torch.randn((gmax, H, I_MOE), dtype=torch.bfloat16, device="cuda") * 0.02)
    w.update(fp8_w1=q1, fp8_s1=s1, fp8_w2=q2, fp8_s2=s2)

    ffn_params = 3 * H * I_MOE
    for dtype in ("fp8", "bf16"):
        wb = 1 if dtype == "fp8" else 2
        for g in expert_counts:
            for m in per_expert:
                if time.time() - begun > args.budget_s:
                    break
                got = attempt(f"expert-ffn {dtype} experts={g} m={m}", lambda: expert_ffn(bench, g, m, dtype, w))
                if got is None and dtype == "bf16":
                    got = attempt(f"expert-ffn loop experts={g} m={m}", lambda: expert_ffn_loop(bench, g, m, dtype, w))
                if got:
                    add("expert-ffn", "routed-experts", dtype, got[0], got[1], 2 * g * m * ffn_params, g * ffn_params * wb + g * m * H * 4,
                        experts=g, tokens_per_expert=m, tokens=g * m, k=H, n=I_MOE)

    shapes = [("q_a", H, 1536), ("q_b", 1536, 128 * 192), ("kv_a", H, 576), ("o_proj", 128 * 128, H), ("gate", H, 256)]
    for dtype in ("fp8", "bf16"):
        wb = 1 if dtype == "fp8" else 2
        for t in tokens:
            if time.time() - begun > args.budget_s:
                break
            for name, inter in (("shared-expert-ffn", I_MOE), ("dense-ffn", I_DENSE)):
                got = attempt(f"{name} {dtype} t={t}", lambda: dense_ffn(bench, t, inter, dtype))
                if got:
                    add("gemm", name, dtype, got[0], got[1], 2 * t * 3 * H * inter, 3 * H * inter * wb + t * H * 4,
                        tokens=t, k=H, n=inter)
            for name, k, n in shapes:
                got = attempt(f"{name} {dtype} t={t}", lambda: dense(bench, t, k, n, dtype))
                if got:
                    add("gemm", name, dtype, got[0], got[1], 2 * t * k * n, k * n * wb + t * (k + n) * 2, tokens=t, k=k, n=n)

    for kv_len in (1024, 4096):
        for t in ((1, 128) if args.quick else (1, 8, 32, 64, 128)):
            if time.time() - begun > args.budget_s:
                break
            got = attempt(f"mla-decode t={t} kv={kv_len}", lambda: mla_decode(bench, t, kv_len))
            if got:
                add("mla-decode", "core-mla-absorbed", "bf16", got[0], got[1], 2 * t * kv_len * 128 * (576 + 512),
                    t * kv_len * 576 * 2, tokens=t, kv_length=kv_len)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compute.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=COLUMNS)
        wr.writeheader()
        for r in rows:
            wr.writerow({c: r.get(c, "") for c in COLUMNS})
    with open(os.path.join(args.out, "compute-run.json"), "w") as f:
        json.dump({"reps": args.reps, "warmup": args.warmup, "l2_flush_bytes": 512 * 1024 * 1024, "errors": errors,
                   "seconds": round(time.time() - begun, 1), "torch": torch.__version__,
                   "device": torch.cuda.get_device_name(0)}, f, indent=1)
    print(f"wrote {len(rows)} rows, {len(errors)} errors in {time.time() - begun:.1f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        raise
