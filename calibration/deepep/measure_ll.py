"""Measures DeepEP's low-latency dispatch and combine per rank, on the GPUs of one host.

One process per GPU (torch.multiprocessing). For every case of `cases.py` and every trial:

    spin (align_us, so the host has queued the whole trial) -> all-reduce of one float
    (ranks leave it together: the GPU-side alignment) -> spin pre_us[rank] ("attention")
    -> dispatch -> spin mid_us[rank] ("expert GEMM") -> combine

Fused mode times `low_latency_dispatch(..., return_recv_hook=False)` and the combine as one
kernel each; hook mode launches the SEND kernel, then (after `settle_us` of spin, if any)
the receive hook, and times each kernel apart. Kernel start and end times come from the
PyTorch profiler (CUPTI), on the GPU's clock; `e2e_us` runs from the end of the aligning
all-reduce to the end of the combine. Writes, in `--out`:

- `ll-trials.csv`: one row per case, rank and trial (every measured time);
- `ll.csv`: one row per case and rank: median, p10 and p90 over the trials;
- `routing.csv`: the experts of every token (`case,rank,token,e0..e7`);
- `ll-run.json`: the run's settings (sizes, trials, spin calibration, cases).

Usage (see README.md): python3 measure_ll.py --deepep DeepEP --out OUT [--cases all|smoke]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from typing import Dict, List

import cases as case_list

# Columns of ll-trials.csv (times in microseconds; *_start_us relative to the aligning
# all-reduce's end on the same rank).
TRIAL_TIMES = [
    "pre_spin_us", "mid_spin_us",
    "dispatch_us", "dispatch_send_us", "dispatch_recv_us",
    "combine_us", "combine_send_us", "combine_recv_us",
    "dispatch_start_us", "dispatch_end_us", "combine_start_us", "combine_end_us",
    "dispatch_recv_start_us", "combine_recv_start_us", "e2e_us", "align_skew_us",
]
CASE_COLUMNS = ["case", "group", "mode", "routing", "rank", "ranks", "tokens", "tokens_by_rank",
                "pre_us_requested", "mid_us_requested", "settle_us",
                "sent_selections", "sent_to_self", "received_selections", "received_from_self"]


def percentile(values: List[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0...100; NaN for no values."""
    v = sorted(x for x in values if not math.isnan(x))
    if not v:
        return float("nan")
    pos = (len(v) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def selection_counts(case, rank: int, ranks: int) -> Dict[str, int]:
    """Selections this rank sends (to itself) and receives (from itself) in the case."""
    per_rank = case_list.EXPERTS // ranks
    routing = [case_list.routing_for(case, r, ranks) for r in range(ranks)]
    sent = sum(len(t) for t in routing[rank])
    to_self = sum(1 for t in routing[rank] for e in t if e // per_rank == rank)
    received = sum(1 for r in range(ranks) for t in routing[r] for e in t if e // per_rank == rank)
    return {"sent_selections": sent, "sent_to_self": to_self, "received_selections": received, "received_from_self": to_self}


def classify(name: str) -> str:
    n = name.lower()
    if "nccl" in n:
        return "nccl"
    if "dispatch" in n:
        return "dispatch"
    if "combine" in n:
        return "combine"
    if "spin" in n or "sleep" in n:
        return "spin"
    return "other"


def kernel_events(trace_path: str) -> List[dict]:
    """The GPU kernels of a Chrome trace exported by the profiler, in start order."""
    with open(trace_path) as f:
        data = json.load(f)
    events = [e for e in data.get("traceEvents", []) if e.get("cat") == "kernel" and "dur" in e]
    events.sort(key=lambda e: float(e["ts"]))
    return [{"name": e["name"], "kind": classify(e["name"]), "start": float(e["ts"]), "end": float(e["ts"]) + float(e["dur"])}
            for e in events]


def split_trials(events: List[dict], case, expected_trials: int) -> List[Dict[str, float]]:
    """Cuts the kernel list at each all-reduce and reads one trial's times from each piece."""
    starts = [i for i, e in enumerate(events) if e["kind"] == "nccl"]
    if len(starts) != expected_trials:
        raise RuntimeError(f"case {case.name}: found {len(starts)} all-reduce kernels, expected {expected_trials}")
    trials = []
    for j, i in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(events)
        piece = events[i + 1:end]
        align = events[i]["end"]
        spins = [e for e in piece if e["kind"] == "spin"]
        disp = [e for e in piece if e["kind"] == "dispatch"]
        comb = [e for e in piece if e["kind"] == "combine"]
        want = 1 if case.mode == "fused" else 2
        if len(disp) != want or len(comb) != want:
            raise RuntimeError(f"case {case.name}: trial {j}: {len(disp)} dispatch and {len(comb)} combine kernels, expected {want} each")
        # Spins in launch order: pre (if any), settle after dispatch SEND, mid, settle after combine SEND, align of next trial.
        roles = []
        if case.pre_us_rank > 0:
            roles.append("pre")
        if case.mode == "hook" and case.settle_us > 0:
            roles.append("settle_d")
        if case.mid_us_rank > 0:
            roles.append("mid")
        if case.mode == "hook" and case.settle_us > 0:
            roles.append("settle_c")
        if len(spins) < len(roles):
            raise RuntimeError(f"case {case.name}: trial {j}: {len(spins)} spin kernels, expected at least {len(roles)}")
        by_role = dict(zip(roles, spins))
        nan = float("nan")
        t = {k: nan for k in TRIAL_TIMES}
        t["pre_spin_us"] = by_role["pre"]["end"] - by_role["pre"]["start"] if "pre" in by_role else 0.0
        t["mid_spin_us"] = by_role["mid"]["end"] - by_role["mid"]["start"] if "mid" in by_role else 0.0
        t["dispatch_start_us"] = disp[0]["start"] - align
        t["dispatch_end_us"] = disp[-1]["end"] - align
        t["combine_start_us"] = comb[0]["start"] - align
        t["combine_end_us"] = comb[-1]["end"] - align
        t["e2e_us"] = comb[-1]["end"] - align
        if case.mode == "fused":
            t["dispatch_us"] = disp[0]["end"] - disp[0]["start"]
            t["combine_us"] = comb[0]["end"] - comb[0]["start"]
        else:
            t["dispatch_send_us"] = disp[0]["end"] - disp[0]["start"]
            t["dispatch_recv_us"] = disp[1]["end"] - disp[1]["start"]
            t["combine_send_us"] = comb[0]["end"] - comb[0]["start"]
            t["combine_recv_us"] = comb[1]["end"] - comb[1]["start"]
            t["dispatch_recv_start_us"] = disp[1]["start"] - align
            t["combine_recv_start_us"] = comb[1]["start"] - align
        t["_align_end"] = align
        trials.append(t)
    return trials


class RankCase:
    """A case seen from one rank (its own spins)."""

    def __init__(self, case, rank: int):
        self.__dict__.update(case.__dict__)
        self.case = case
        self.pre_us_rank = float(case.pre_us[rank]) if case.pre_us else 0.0
        self.mid_us_rank = float(case.mid_us[rank]) if case.mid_us else 0.0


def worker(local_rank: int, num_ranks: int, args) -> None:
    sys.path.insert(0, os.path.abspath(args.deepep))
    os.environ.setdefault("NVSHMEM_QP_DEPTH", "2048")  # DeepEP asserts depth >= (max_tokens + 1) * 2
    import torch
    import torch.distributed as dist
    import deep_ep

    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{args.port}", world_size=num_ranks, rank=local_rank,
                            device_id=torch.device(f"cuda:{local_rank}"))
    rank = dist.get_rank()
    group = dist.new_group(list(range(num_ranks)))
    H, E, K, M = case_list.HIDDEN, case_list.EXPERTS, case_list.TOP_K, args.max_tokens
    local_experts = E // num_ranks
    nbytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(M, H, num_ranks, E)
    buffer = deep_ep.Buffer(group, num_rdma_bytes=nbytes, low_latency_mode=True, num_qps_per_rank=local_experts,
                            allow_nvlink_for_low_latency_mode=True, explicitly_destroy=True)

    # Cycles per microsecond of torch.cuda._sleep (its spin counts SM clock cycles).
    def time_spin(cycles: int) -> float:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)
        s.record()
        torch.cuda._sleep(cycles)
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e) * 1000

    time_spin(1000)
    rates = [4_000_000 / time_spin(4_000_000) for _ in range(5)]
    cycles_per_us = sorted(rates)[2]

    def spin(us: float) -> None:
        if us > 0:
            torch.cuda._sleep(max(1, int(us * cycles_per_us)))

    g = torch.Generator(device="cuda")
    g.manual_seed(1234 + rank)
    # The expert outputs that combine returns (content does not change the timing; DeepEP's
    # perf case uses small random values too).
    expert_out = (torch.randn((local_experts, num_ranks * M, H), dtype=torch.bfloat16, device="cuda", generator=g) * 0.1)
    one = torch.zeros(1, dtype=torch.float32, device="cuda")  # all-reduced every trial: stays 0

    chosen = case_list.smoke_cases(num_ranks) if args.cases == "smoke" else case_list.default_cases(num_ranks)
    chosen = case_list.select(chosen, M)
    if args.only:
        chosen = [c for c in chosen if any(p in c.name for p in args.only.split(","))]
    trial_rows: List[dict] = []
    case_rows: List[dict] = []
    routing_rows: List[list] = []
    failures: List[str] = []
    begun = time.time()
    for ci, case in enumerate(chosen):
        rc = RankCase(case, rank)
        T = case.tokens[rank]
        topk = torch.tensor(case_list.routing_for(case, rank, num_ranks), dtype=torch.int64, device="cuda").view(T, K)
        topk = topk.to(deep_ep.topk_idx_t)
        x = torch.randn((T, H), dtype=torch.bfloat16, device="cuda", generator=g) * 0.1
        weights = torch.rand((T, K), dtype=torch.float32, device="cuda", generator=g)
        hook_mode = case.mode == "hook"

        def trial():
            spin(args.align_us)
            dist.all_reduce(one, group=group)
            spin(rc.pre_us_rank)
            _, _, handle, _, hook = buffer.low_latency_dispatch(x, topk, M, E, use_fp8=True, async_finish=False,
                                                                 return_recv_hook=hook_mode)
            if hook_mode:
                spin(case.settle_us)
                hook()
            spin(rc.mid_us_rank)
            _, _, hook = buffer.low_latency_combine(expert_out, topk, weights, handle, async_finish=False,
                                                    return_recv_hook=hook_mode)
            if hook_mode:
                spin(case.settle_us)
                hook()

        try:
            for _ in range(args.warmup):
                trial()
            torch.cuda.synchronize()
            dist.barrier(group=group)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(args.trials):
                    trial()
                torch.cuda.synchronize()
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                path = tmp.name
            prof.export_chrome_trace(path)
            trials = split_trials(kernel_events(path), rc, args.trials)
            os.unlink(path)
        except Exception as exc:  # a broken case is reported, the others still run
            failures.append(f"rank {rank} case {case.name}: {type(exc).__name__}: {exc}")
            trials = []
        # Alignment check: each trial's all-reduce end against rank 0's (host clock via CUPTI).
        ends = [t["_align_end"] for t in trials]
        all_ends = [None] * num_ranks
        dist.all_gather_object(all_ends, ends, group=group)
        ok = all(len(e) == args.trials for e in all_ends)
        for i, t in enumerate(trials):
            t["align_skew_us"] = t["_align_end"] - all_ends[0][i] if ok else float("nan")
        counts = selection_counts(case, rank, num_ranks)
        base = {"case": case.name, "group": case.group, "mode": case.mode, "routing": case.routing, "rank": rank,
                "ranks": num_ranks, "tokens": T, "tokens_by_rank": "/".join(str(t) for t in case.tokens),
                "pre_us_requested": rc.pre_us_rank, "mid_us_requested": rc.mid_us_rank, "settle_us": case.settle_us, **counts}
        for i, t in enumerate(trials):
            trial_rows.append({**base, "trial": i, **{k: t[k] for k in TRIAL_TIMES}})
        if trials:
            row = dict(base)
            row["trials"] = len(trials)
            for k in TRIAL_TIMES:
                vals = [t[k] for t in trials]
                row[f"{k}_p50"] = percentile(vals, 50)
                row[f"{k}_p10"] = percentile(vals, 10)
                row[f"{k}_p90"] = percentile(vals, 90)
            case_rows.append(row)
        if rank == 0:
            routing_rows.extend(case_list.routing_rows(case, num_ranks))
            med = case_rows[-1] if trials else {}
            print(f"[{ci + 1}/{len(chosen)} {time.time() - begun:6.1f} s] {case.name}: rank 0 "
                  f"dispatch {med.get('dispatch_us_p50', float('nan')):.1f} / send {med.get('dispatch_send_us_p50', float('nan')):.1f} "
                  f"+ recv {med.get('dispatch_recv_us_p50', float('nan')):.1f} us, combine {med.get('combine_us_p50', float('nan')):.1f} / "
                  f"{med.get('combine_send_us_p50', float('nan')):.1f} + {med.get('combine_recv_us_p50', float('nan')):.1f} us, "
                  f"e2e {med.get('e2e_us_p50', float('nan')):.1f} us, skew p90 {med.get('align_skew_us_p90', float('nan')):.2f} us",
                  flush=True)

    gathered = [None] * num_ranks
    dist.all_gather_object(gathered, (trial_rows, case_rows, failures), group=group)
    if rank == 0:
        all_trials = [r for g_ in gathered for r in g_[0]]
        all_cases = sorted((r for g_ in gathered for r in g_[1]), key=lambda r: ([c.name for c in chosen].index(r["case"]), r["rank"]))
        all_failures = [f for g_ in gathered for f in g_[2]]
        os.makedirs(args.out, exist_ok=True)
        stat_cols = [f"{k}_{q}" for k in TRIAL_TIMES for q in ("p50", "p10", "p90")]
        write_csv(os.path.join(args.out, "ll.csv"), CASE_COLUMNS + ["trials"] + stat_cols, all_cases)
        write_csv(os.path.join(args.out, "ll-trials.csv"), CASE_COLUMNS + ["trial"] + TRIAL_TIMES, all_trials)
        with open(os.path.join(args.out, "routing.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case", "rank", "token"] + [f"e{i}" for i in range(K)])
            w.writerows(routing_rows)
        settings = {"ranks": num_ranks, "hidden": H, "experts": E, "top_k": K, "max_dispatch_tokens_per_rank": M,
                    "dispatch_dtype": "fp8", "combine_dtype": "bf16", "nvlink_for_low_latency": True,
                    "trials": args.trials, "warmup": args.warmup, "align_us": args.align_us,
                    "spin_cycles_per_us": cycles_per_us, "cases": [c.name for c in chosen], "failures": all_failures,
                    "seconds": round(time.time() - begun, 1)}
        with open(os.path.join(args.out, "ll-run.json"), "w") as f:
            json.dump(settings, f, indent=1)
        print(f"wrote {len(all_cases)} case rows, {len(all_trials)} trial rows; {len(all_failures)} failures", flush=True)
        for fl in all_failures:
            print("FAILED:", fl, flush=True)
    buffer.destroy()
    dist.barrier()
    dist.destroy_process_group()


def write_csv(path: str, columns: List[str], rows: List[dict]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.3f}"
        return v

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt(r.get(k, "")) for k in columns})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deepep", required=True, help="DeepEP source folder with the built extension (deep_ep, deep_ep_cpp*.so)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-processes", type=int, default=2, help="GPUs (one process each)")
    p.add_argument("--cases", choices=["all", "smoke"], default="all")
    p.add_argument("--only", default="", help="comma-separated substrings: run only the cases whose name holds one")
    p.add_argument("--max-tokens", type=int, default=case_list.MAX_TOKENS, help="num_max_dispatch_tokens_per_rank")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--align-us", type=float, default=2000.0, help="spin before each trial's aligning all-reduce")
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(args.num_processes, args), nprocs=args.num_processes)


if __name__ == "__main__":
    main()
