#!/usr/bin/env bash
# One sitting on one GPU: the environment, then measure_host.py. Usage (repository root):
#   bash calibration/host/run_device.sh OUTDIR
set -u
out=${1:?output folder}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/../deepep/environment.sh" "$out/environment.json" > /dev/null
lscpu > "$out/lscpu.txt" 2>&1 || true
CUDA_VISIBLE_DEVICES=0 timeout 300 python3 "$here/measure_host.py" "$out" 2>&1 | tee "$out/measure_host.log"
