"""Measures the production compute kernels of a DeepSeek-V3 decode layer on one Hopper GPU.

Families (`--family`, one subprocess each from `run_device.sh`, so that a crash in one
library loses only its own rows):

- `expert-gemm`: DeepGEMM's masked grouped FP8 GEMM (`m_grouped_fp8_gemm_nt_masked`, 1D2D on
  SM90: per-token x 128-channel activation scales, 128x128 weight-block scales), the kernel
  SGLang and vLLM run after DeepEP's low-latency dispatch. Both GEMMs of the routed expert FFN:
  gate-up (n 4096, k 7168) and down (n 7168, k 2048); 1...32 local experts x 0...512 tokens
  per expert, every expert equal (`equal`), tokens drawn multinomially over the experts
  (`uniform`), and one hot expert with 8x the others' mean (`hot`).
- `act-quant`: SiLU-and-mul with per-token 128-group FP8 quantisation on the masked layout
  (the step between the two GEMMs; SGLang's `silu_and_mul_masked_post_quant_fwd` is a Triton
  kernel of the same shape, this one is written here in Triton).
- `proj-gemm`: DeepGEMM's dense FP8 GEMM (`fp8_gemm_nt`) at the attention projections of MLA
  (q_a and kv_a fused: n 2112 k 7168; q_b: n 24576 k 1536; o_proj: n 7168 k 16384) and the
  shared expert (gate-up n 4096 k 7168, down n 7168 k 2048), 1...512 tokens; plus the
  absorbed per-head BF16 batched GEMMs (`torch.bmm`: W_UK n 512 k 128, W_UV n 128 k 512, 128
  heads) that run around the core attention in absorbed MLA decode.
- `flash-mla`: FlashMLA's dense decode (`flash_mla_with_kvcache`, BF16 KV cache, MQA mode:
  128 query heads, 1 KV head, d_qk 576, d_v 512, page block 64), batch 1...256 x KV
  256...32768, s_q 1 and 2 (MTP), equal lengths and mixed lengths.

Timing: the PyTorch profiler (CUPTI) records every kernel on the GPU's clock. Each timed
repetition flushes the L2 cache (a 512 MiB memset), spins the GPU ~0.3 ms so that the host has
queued the repetition, then launches the operation. A repetition's time is the summed duration
of the operation's kernels (`us_*`: the main kernel named in `kernel`; `other_us_p50`: any
other kernel the call launched, e.g. FlashMLA's split-KV combine). Median, p10 and p90 over
`--reps` repetitions after `--warmup` untimed ones (JIT compilation happens there).

Rows go to `<out>/<family>.csv` as they are measured (flushed per row), errors to
`<out>/<family>-errors.txt`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
import traceback

import torch

H, I_MOE = 7168, 2048
COLUMNS = ["family", "name", "dtype", "kernel", "routing", "experts", "tokens_per_expert", "max_tokens_per_expert",
           "tokens_by_expert", "tokens", "n", "k", "batch", "s_q", "kv_length", "kv_max", "kv_by_request",
           "flops", "bytes", "us_p50", "us_p10", "us_p90", "other_us_p50", "span_us_p50", "reps", "kernels"]

FLUSH = None
ARGS = None


class CompiledOnly(Exception):
    """Raised by `timed` in --compile-only mode after one untimed call (JIT caches warmed)."""


def mine(index: int) -> bool:
    """Whether case `index` belongs to this process's --shard i/n."""
    i, n = ARGS.shard
    return index % n == i


def quantiles(t):
    t = sorted(t)

    def q(p):
        pos = (len(t) - 1) * p
        lo, hi = math.floor(pos), math.ceil(pos)
        return t[lo] + (t[hi] - t[lo]) * (pos - lo)

    return q(0.5), q(0.1), q(0.9)


def timed(fn, reps: int, warmup: int):
    """Runs `fn` warmup + reps times; returns per-rep (main_us, other_us, span_us, names) from CUPTI."""
    if ARGS.compile_only:
        fn()
        torch.cuda.synchronize()
        raise CompiledOnly()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(reps):
            FLUSH.zero_()
            torch.cuda._sleep(400_000)
            fn()
        torch.cuda.synchronize()
    kernels = []
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = e.name
        if "memcpy" in name.lower() or "memset" in name.lower():
            continue
        kernels.append((e.time_range.start, e.time_range.end, name))
    kernels.sort()
    # Segment repetitions at the spin kernel; the flush memset/fill kernel precedes it.
    reps_k, cur = [], None
    for s, e, name in kernels:
        if "spin" in name.lower() or "sleep" in name.lower():
            cur = []
            reps_k.append(cur)
            continue
        if "FillFunctor" in name or "fill_kernel" in name:
            continue
        if cur is not None:
            cur.append((s, e, name))
    out = []
    for ks in reps_k:
        if not ks:
            continue
        # The main kernel: the longest-named-by-duration kernel class of the first rep decides.
        out.append(ks)
    if len(out) != reps:
        raise RuntimeError(f"profiler returned {len(out)} repetitions, expected {reps}")
    return out


def summarise(reps_kernels, main_match):
    mains, others, spans, names = [], [], [], set()
    for ks in reps_kernels:
        m = sum(e - s for s, e, n in ks if main_match(n))
        o = sum(e - s for s, e, n in ks if not main_match(n))
        mains.append(m)
        others.append(o)
        spans.append(max(e for _, e, _ in ks) - min(s for s, _, _ in ks))
        names.update(n for _, _, n in ks)  # full names: DeepGEMM's template arguments carry its tile sizes
    if max(mains) <= 0:
        raise RuntimeError(f"no main kernel among {sorted(names)}")
    p50, p10, p90 = quantiles(mains)
    return p50, p10, p90, quantiles(others)[0], quantiles(spans)[0], sorted(names)


class Writer:
    def __init__(self, out, family):
        os.makedirs(out, exist_ok=True)
        self.f = open(os.path.join(out, f"{family}.csv"), "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=COLUMNS)
        self.w.writeheader()
        self.err = open(os.path.join(out, f"{family}-errors.txt"), "w")
        self.family = family
        self.begun = time.time()
        self.rows = 0

    def add(self, reps, stats, **kw):
        p50, p10, p90, other, span, names = stats
        row = {c: "" for c in COLUMNS}
        row.update(family=self.family, us_p50=f"{p50:.3f}", us_p10=f"{p10:.3f}", us_p90=f"{p90:.3f}",
                   other_us_p50=f"{other:.3f}", span_us_p50=f"{span:.3f}", reps=reps, kernels="|".join(names))
        row.update({k: v for k, v in kw.items()})
        self.w.writerow(row)
        self.f.flush()
        self.rows += 1
        print(f"{time.time() - self.begun:6.1f}s {kw.get('name')} {kw} -> {p50:.2f} us (+{other:.2f})", flush=True)

    def error(self, label, exc):
        if isinstance(exc, CompiledOnly):
            return
        msg = f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0][:400] if str(exc) else ''}"
        self.err.write(msg + "\n")
        self.err.flush()
        print("ERROR", msg, flush=True)


# ---------------------------------------------------------------- FP8 casts (DeepGEMM's recipes)

def per_token_group_fp8(x):
    """[..., M, K] bf16 -> fp8 [..., M, K], float32 scales [..., M, K/128] (per token, 128 channels)."""
    shape = x.shape
    v = x.float().view(*shape[:-1], shape[-1] // 128, 128)
    sf = v.abs().amax(-1).clamp(min=1e-4) / 448.0
    q = (v / sf.unsqueeze(-1)).to(torch.float8_e4m3fn).view(shape)
    return q, sf


def per_block_fp8(w):
    """[G, N, K] -> fp8 [G, N, K], float32 scales [G, ceil(N/128), ceil(K/128)] (128x128 blocks,
    zero-padded at the edges as DeepGEMM's `per_block_cast_to_fp8` does)."""
    g, n, k = w.shape
    n_pad, k_pad = (n + 127) // 128 * 128, (k + 127) // 128 * 128
    p = torch.zeros((g, n_pad, k_pad), dtype=torch.float32, device=w.device)
    p[:, :n, :k] = w.float()
    v = p.view(g, n_pad // 128, 128, k_pad // 128, 128)
    sf = v.abs().amax(dim=(2, 4)).clamp(min=1e-4) / 448.0
    q = (v / sf[:, :, None, :, None]).to(torch.float8_e4m3fn).view(g, n_pad, k_pad)[:, :n, :k].contiguous()
    return q, sf


# ---------------------------------------------------------------- routing of a case

def tokens_by_expert(experts, mean_m, routing, rng):
    if routing == "equal":
        return [mean_m] * experts
    total = mean_m * experts
    if routing == "hot":
        if experts == 1:
            return [mean_m * 8]
        # One expert at 8x the others' mean: hot = 8 c, others c, total = (8 + G - 1) c.
        c = total / (experts + 7)
        rest = [int(c)] * (experts - 1)
        hot = total - sum(rest)
        return [hot] + rest
    # uniform: each of `total` tokens picks an expert uniformly (multinomial counts).
    counts = [0] * experts
    for _ in range(total):
        counts[rng.randrange(experts)] += 1
    return counts


# ---------------------------------------------------------------- families

def family_expert_gemm(args, w):
    import deep_gemm
    from deep_gemm.utils.layout import get_mn_major_tma_aligned_tensor
    rng = random.Random(1)
    gmax = 32
    shapes = [("gate-up", 2 * I_MOE, H), ("down", H, I_MOE)]
    weights = {}
    for name, n, k in shapes:
        parts = [per_block_fp8(torch.randn((4, n, k), dtype=torch.bfloat16, device="cuda") * 0.02) for _ in range(gmax // 4)]
        weights[name] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        del parts
    experts_list = [1, 2, 4, 8, 16, 32]
    ms = [0, 1, 4, 16, 32, 64, 96, 128, 192, 256, 384, 512]
    cases = []
    for g in experts_list:
        for m in ms:
            cases.append((g, m, "equal"))
            if m >= 4 and g >= 4:
                cases.append((g, m, "uniform"))
            if m >= 4 and g >= 2 and m <= 256:
                cases.append((g, m, "hot"))
    if args.quick:
        cases = [(4, 32, "equal"), (8, 64, "hot")]
    for idx, (g, m, routing) in enumerate(cases):
        if not mine(idx):
            continue
        if time.time() - w.begun > args.budget_s:
            w.error("budget", RuntimeError(f"stopped before experts={g} m={m} {routing}"))
            break
        counts = tokens_by_expert(g, m, routing, rng)
        max_m = max(64, ((max(counts) + 63) // 64) * 64)
        expected_m = max(1, m)
        for name, n, k in shapes:
            label = f"{name} experts={g} m={m} {routing}"
            try:
                a = torch.randn((g, max_m, k), dtype=torch.bfloat16, device="cuda") * 0.1
                aq, sa = per_token_group_fp8(a)
                del a
                for j, c in enumerate(counts):
                    sa[j, c:] = 0
                sa = get_mn_major_tma_aligned_tensor(sa)
                bq, sb = weights[name][0][:g].contiguous(), weights[name][1][:g].contiguous()
                d = torch.empty((g, max_m, n), dtype=torch.bfloat16, device="cuda")
                masked = torch.tensor(counts, dtype=torch.int32, device="cuda")

                def run():
                    deep_gemm.m_grouped_fp8_gemm_nt_masked((aq, sa), (bq, sb), d, masked, expected_m)

                reps = timed(run, args.reps, args.warmup)
                stats = summarise(reps, lambda s: "gemm" in s.lower())
                rows = sum(counts)
                w.add(args.reps, stats, name=name, dtype="fp8", kernel="deep_gemm.m_grouped_fp8_gemm_nt_masked",
                      routing=routing, experts=g, tokens_per_expert=m, max_tokens_per_expert=max(counts),
                      tokens_by_expert="/".join(map(str, counts)), tokens=rows, n=n, k=k,
                      flops=2 * rows * n * k, bytes=g * n * k + rows * (k + 2 * n))
                del aq, sa, d
            except Exception as exc:  # noqa: BLE001
                w.error(label, exc)
                if not isinstance(exc, CompiledOnly):
                    traceback.print_exc()


def family_act_quant(args, w):
    import triton
    import triton.language as tl

    # As SGLang's silu_and_mul_masked_post_quant_fwd (python/sglang/srt/layers/moe/ep_moe/kernels.py):
    # a program per (expert, 128-channel group, row stride), looping over the expert's
    # masked_m rows only, so the grid does not grow with the buffer's capacity.
    @triton.jit
    def silu_mul_quant(x_ptr, y_ptr, s_ptr, masked_ptr, max_m, I: tl.constexpr, GROUP: tl.constexpr, STRIDE: tl.constexpr):
        g = tl.program_id(0)
        grp = tl.program_id(1)
        first = tl.program_id(2)
        rows = tl.load(masked_ptr + g)
        cols = grp * GROUP + tl.arange(0, GROUP)
        for row in tl.range(first, rows, STRIDE):
            base = (g * max_m + row)
            gate = tl.load(x_ptr + base * 2 * I + cols).to(tl.float32)
            up = tl.load(x_ptr + base * 2 * I + I + cols).to(tl.float32)
            a = gate / (1.0 + tl.exp(-gate)) * up
            amax = tl.maximum(tl.max(tl.abs(a), 0), 1e-4)
            sf = amax / 448.0
            tl.store(y_ptr + base * I + cols, (a / sf).to(tl.float8e4nv))
            tl.store(s_ptr + base * (I // GROUP) + grp, sf)

    rng = random.Random(2)
    cases = []
    for g in [1, 2, 4, 8, 16, 32]:
        for m in [1, 4, 16, 32, 64, 128, 256, 512]:
            cases.append((g, m, "equal"))
            if g >= 2 and 4 <= m <= 256:
                cases.append((g, m, "hot"))
    if args.quick:
        cases = [(4, 32, "equal")]
    for g, m, routing in cases:
        if time.time() - w.begun > args.budget_s:
            w.error("budget", RuntimeError(f"stopped before experts={g} m={m} {routing}"))
            break
        counts = tokens_by_expert(g, m, routing, rng)
        max_m = max(64, ((max(counts) + 63) // 64) * 64)
        try:
            x = torch.randn((g, max_m, 2 * I_MOE), dtype=torch.bfloat16, device="cuda")
            y = torch.empty((g, max_m, I_MOE), dtype=torch.float8_e4m3fn, device="cuda")
            s = torch.empty((g, max_m, I_MOE // 128), dtype=torch.float32, device="cuda")
            masked = torch.tensor(counts, dtype=torch.int32, device="cuda")
            stride = 8
            grid = (g, I_MOE // 128, stride)

            def run():
                silu_mul_quant[grid](x, y, s, masked, max_m, I=I_MOE, GROUP=128, STRIDE=stride)

            reps = timed(run, args.reps, args.warmup)
            stats = summarise(reps, lambda n: "silu" in n.lower())
            rows = sum(counts)
            w.add(args.reps, stats, name="silu-mul-quant", dtype="bf16->fp8", kernel="triton silu_mul_quant (masked, row loop)",
                  routing=routing, experts=g, tokens_per_expert=m, max_tokens_per_expert=max(counts),
                  tokens_by_expert="/".join(map(str, counts)), tokens=rows, n=I_MOE, k=2 * I_MOE,
                  flops=rows * I_MOE * 8, bytes=rows * (2 * I_MOE * 2 + I_MOE + I_MOE // 128 * 4))
        except Exception as exc:  # noqa: BLE001
            w.error(f"act-quant experts={g} m={m} {routing}", exc)
            traceback.print_exc()


def family_proj_gemm(args, w):
    import deep_gemm
    from deep_gemm.utils.layout import get_mn_major_tma_aligned_tensor
    shapes = [("qkv_a", 1536 + 576, H), ("q_b", 128 * 192, 1536), ("o_proj", H, 128 * 128),
              ("shared-gate-up", 2 * I_MOE, H), ("shared-down", H, I_MOE)]
    tokens = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512]
    if args.quick:
        tokens, shapes = [1, 128], shapes[:2]
    for name, n, k in shapes:
        b = torch.randn((1, n, k), dtype=torch.bfloat16, device="cuda") * 0.02
        bq, sb = per_block_fp8(b)
        bq, sb = bq[0].contiguous(), sb[0].contiguous()
        del b
        for idx, t in enumerate(tokens):
            if not mine(idx + len(tokens) * shapes.index((name, n, k))):
                continue
            if time.time() - w.begun > args.budget_s:
                w.error("budget", RuntimeError(f"stopped before {name} t={t}"))
                break
            try:
                a = torch.randn((t, k), dtype=torch.bfloat16, device="cuda") * 0.1
                aq, sa = per_token_group_fp8(a)
                sa = get_mn_major_tma_aligned_tensor(sa)
                d = torch.empty((t, n), dtype=torch.bfloat16, device="cuda")

                def run():
                    deep_gemm.fp8_gemm_nt((aq, sa), (bq, sb), d)

                reps = timed(run, args.reps, args.warmup)
                stats = summarise(reps, lambda s: "gemm" in s.lower())
                w.add(args.reps, stats, name=name, dtype="fp8", kernel="deep_gemm.fp8_gemm_nt", tokens=t, n=n, k=k,
                      flops=2 * t * n * k, bytes=n * k + t * (k + 2 * n))
            except Exception as exc:  # noqa: BLE001
                w.error(f"{name} t={t}", exc)
                traceback.print_exc()
    if args.compile_only:
        return
    heads = 128
    for name, n, k in (("w_uk-bmm", 512, 128), ("w_uv-bmm", 128, 512)):
        wt = torch.randn((heads, k, n), dtype=torch.bfloat16, device="cuda") * 0.02
        for t in tokens:
            if time.time() - w.begun > args.budget_s:
                break
            try:
                x = torch.randn((heads, t, k), dtype=torch.bfloat16, device="cuda")

                def run():
                    return torch.bmm(x, wt)

                reps = timed(run, args.reps, args.warmup)
                stats = summarise(reps, lambda s: True)
                w.add(args.reps, stats, name=name, dtype="bf16", kernel="torch.bmm (128 heads)", tokens=t, n=n, k=k,
                      batch=heads, flops=2 * heads * t * n * k, bytes=2 * heads * (k * n + t * (k + n)))
            except Exception as exc:  # noqa: BLE001
                w.error(f"{name} t={t}", exc)
                traceback.print_exc()


def family_flash_mla(args, w):
    import flash_mla
    h_q, d, dv, block = 128, 576, 512, 64
    rng = random.Random(3)
    cases = []
    for s_q in (1, 2):
        for b in (1, 4, 16, 32, 64, 128, 256):
            for kv in (256, 1024, 2048, 4096, 8192, 16384, 32768):
                cases.append((b, kv, s_q, "equal"))
    for b in (16, 64, 128):
        for kv in (1024, 4096):
            cases.append((b, kv, 1, "mixed"))
    if args.quick:
        cases = [(4, 1024, 1, "equal"), (16, 1024, 1, "mixed")]
    for b, kv, s_q, lengths in cases:
        if time.time() - w.begun > args.budget_s:
            w.error("budget", RuntimeError(f"stopped before b={b} kv={kv} s_q={s_q} {lengths}"))
            break
        if lengths == "equal":
            seqlens = [kv] * b
        else:
            # Mixed: lengths uniform on [kv/8, 15 kv/8] (mean kv), as a rank's requests differ.
            seqlens = [max(s_q, int(rng.uniform(kv / 8, 15 * kv / 8))) for _ in range(b)]
        total = sum(seqlens)
        if total * d * 2 > 24e9:
            continue
        try:
            pad = max(((max(seqlens) + 255) // 256) * 256, 256)
            blocks_per = pad // block
            q = (torch.randn((b, s_q, h_q, d), dtype=torch.bfloat16, device="cuda") / 10).clamp(-1, 1)
            kcache = (torch.randn((b * blocks_per, block, 1, d), dtype=torch.bfloat16, device="cuda") / 10)
            table = torch.randperm(b * blocks_per, dtype=torch.int32, device="cuda").view(b, blocks_per)
            cache_seqlens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
            meta, _ = flash_mla.get_mla_metadata()

            def run():
                return flash_mla.flash_mla_with_kvcache(q, kcache, table, cache_seqlens, dv, meta, None, causal=True)

            reps = timed(run, args.reps, args.warmup)
            stats = summarise(reps, lambda n: "combine" not in n.lower() and "sched" not in n.lower()
                              and "meta" not in n.lower())
            flops = 2 * h_q * s_q * total * (d + dv)
            nbytes = total * d * 2 + b * s_q * h_q * (d + dv) * 2
            w.add(args.reps, stats, name="flash-mla-decode", dtype="bf16", kernel="flash_mla.flash_mla_with_kvcache (dense, sm90)",
                  routing=lengths, batch=b, s_q=s_q, kv_length=total // b, kv_max=max(seqlens),
                  kv_by_request="/".join(map(str, seqlens)) if lengths == "mixed" else "",
                  flops=flops, bytes=nbytes)
            del q, kcache, table
        except Exception as exc:  # noqa: BLE001
            w.error(f"flash-mla b={b} kv={kv} s_q={s_q} {lengths}", exc)
            traceback.print_exc()


FAMILIES = {"expert-gemm": family_expert_gemm, "act-quant": family_act_quant, "proj-gemm": family_proj_gemm,
            "flash-mla": family_flash_mla}


def main() -> None:
    global FLUSH
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True, choices=sorted(FAMILIES))
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=200, help="stop starting new points after this many seconds")
    p.add_argument("--quick", action="store_true", help="two points per family (a smoke test)")
    p.add_argument("--compile-only", action="store_true", help="call each shape once, untimed (warms DeepGEMM's JIT cache)")
    p.add_argument("--shard", default="0/1", help="i/n: only cases whose index is i mod n")
    args = p.parse_args()
    global ARGS
    i, n = (int(v) for v in args.shard.split("/"))
    args.shard = (i, n)
    ARGS = args
    torch.cuda.set_device(0)
    FLUSH = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    w = Writer(args.out, args.family + (f"-compile-{i}" if args.compile_only else ""))
    with torch.inference_mode():
        FAMILIES[args.family](args, w)
    info = {"family": args.family, "rows": w.rows, "seconds": round(time.time() - w.begun, 1), "reps": args.reps,
            "warmup": args.warmup, "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "cuda": torch.version.cuda}
    with open(os.path.join(args.out, f"{w.family}-run.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    sys.exit(main())
