"""What the host costs a decode step, on one GPU, with PyTorch: the numbers behind EPSim's
`host:` defaults (launch_us, graph_launch_us) and the idle effect behind DeepEP issue 138.

Writes OUT/host.csv, one row per trial:
  case      eager-add | eager-gemm | graph-replay | idle-replay | sync
  kernels   kernels launched in the trial (eager: the loop's length; graph: nodes)
  idle_ms   milliseconds the GPU sat idle before the trial (idle-replay), else 0
  trial     0-based
  host_us   CPU time of the launch calls, per kernel (eager) or per replay (graph), us
  gpu_us    GPU time between CUDA events around the launches, per kernel (eager) or per replay
  done_us   CPU time from the first launch call to the GPU finishing (synchronize), us

Usage: python3 measure_host.py OUT   (one visible GPU; about a minute)
"""
import csv, json, os, platform, sys, time

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
dev = torch.device("cuda", 0)
torch.cuda.set_device(dev)
rows = []


def row(case, kernels, idle_ms, trial, host_us, gpu_us, done_us):
    rows.append(dict(case=case, kernels=kernels, idle_ms=idle_ms, trial=trial,
                     host_us=f"{host_us:.4f}", gpu_us=f"{gpu_us:.4f}", done_us=f"{done_us:.4f}"))


tiny = torch.zeros(1, device=dev)
# A decode-sized GEMM: 16 tokens x hidden 7168 against a 7168 x 256 gate (BF16).
a = torch.randn(16, 7168, device=dev, dtype=torch.bfloat16)
b = torch.randn(7168, 256, device=dev, dtype=torch.bfloat16)
ops = {"eager-add": lambda: tiny.add_(1.0), "eager-gemm": lambda: torch.mm(a, b)}
start_ev = torch.cuda.Event(enable_timing=True)
end_ev = torch.cuda.Event(enable_timing=True)

# Eager: N launches back to back; the host's time per launch, and the GPU's.
N = 256
for case, op in ops.items():
    for _ in range(3):
        for _ in range(N):
            op()
    torch.cuda.synchronize()
    for trial in range(40):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start_ev.record()
        for _ in range(N):
            op()
        end_ev.record()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        row(case, N, 0, trial, (t1 - t0) / N * 1e6, start_ev.elapsed_time(end_ev) * 1e3 / N, (t2 - t0) * 1e6)

# CUDA graphs of n tiny kernels: the host's cost of one replay, the GPU's time for it.
graphs = {}
for n in (1, 8, 64, 512, 2048):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            tiny.add_(1.0)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            tiny.add_(1.0)
    graphs[n] = g
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    for trial in range(40):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start_ev.record()
        g.replay()
        end_ev.record()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        row("graph-replay", n, 0, trial, (t1 - t0) * 1e6, start_ev.elapsed_time(end_ev) * 1e3, (t2 - t0) * 1e6)

# The first replay after the GPU sat idle (DeepEP issue 138: the first dispatch after 100 ms
# idle took 0.68-2.58 ms against 0.36 ms in steady state).
g = graphs[512]
for idle_ms in (0, 1, 10, 100, 500):
    for trial in range(12):
        torch.cuda.synchronize()
        if idle_ms:
            time.sleep(idle_ms / 1000)
        t0 = time.perf_counter()
        start_ev.record()
        g.replay()
        end_ev.record()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        row("idle-replay", 512, idle_ms, trial, (t1 - t0) * 1e6, start_ev.elapsed_time(end_ev) * 1e3, (t2 - t0) * 1e6)

# A host synchronize on an idle GPU (what a barrier before a step costs the host).
for trial in range(40):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    row("sync", 0, 0, trial, (t1 - t0) * 1e6, 0.0, (t1 - t0) * 1e6)

with open(os.path.join(out, "host.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)

cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception as exc:
    cpu = f"unknown ({exc})"
json.dump({"cpu_model": cpu, "python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
           "sms": torch.cuda.get_device_properties(0).multi_processor_count,
           "eager_loop_kernels": N}, open(os.path.join(out, "host-run.json"), "w"), indent=1)
print(f"{len(rows)} rows")
