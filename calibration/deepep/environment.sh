#!/usr/bin/env bash
# Writes the measurement environment as JSON: GPUs, driver, links, clocks, library versions,
# DeepEP's commit. Usage: bash environment.sh OUT.json
set -u
here=$(cd "$(dirname "$0")" && pwd)
python3 - "$1" "$here" <<'EOF'
import json, platform, subprocess, sys, os
out, here = sys.argv[1], sys.argv[2]
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        return f"error: {exc}"
env = {
    "gpus": sh("nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit,pci.bus_id --format=csv"),
    "topology": sh("nvidia-smi topo -m"),
    "nvlink": sh("nvidia-smi nvlink -s -i 0 | head -30"),
    "cuda_driver": sh("nvidia-smi | sed -n 3p"),
    "nvcc": sh("nvcc --version | tail -2"),
    "python": platform.python_version(),
    "kernel": platform.release(),
    "cpu_count": os.cpu_count(),
    "pip": sh("python3 -m pip list 2>/dev/null | grep -iE '^(torch|triton|numpy|nvidia-nccl[a-z0-9-]*|nvidia-nvshmem[a-z0-9-]*|nvidia-cublas[a-z0-9-]*|nvidia-cuda-runtime[a-z0-9-]*) '"),
    "deepep_commit": open(os.path.join(here, "DeepEP", "COMMIT")).read().strip() if os.path.exists(os.path.join(here, "DeepEP", "COMMIT")) else "unknown",
}
try:
    import torch
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    env["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    env["sms"] = [torch.cuda.get_device_properties(i).multi_processor_count for i in range(torch.cuda.device_count())]
except Exception as exc:
    env["torch_error"] = str(exc)
json.dump(env, open(out, "w"), indent=1)
print(json.dumps(env, indent=1))
EOF
