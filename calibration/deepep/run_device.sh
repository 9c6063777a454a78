#!/usr/bin/env bash
# One sitting on a machine with two NVLink-joined GPUs: record the environment, build
# DeepEP's V1 kernels (unless already built), run the low-latency harness, the compute
# measurements on GPU 0, and DeepEP's own test_low_latency.py for a log to parse.
# Every step has a time limit, so whatever finished comes back.
#
#   bash calibration/deepep/run_device.sh OUTDIR [SECONDS]     (from the repository root)
#
# DeepEP's source must be in calibration/deepep/DeepEP (README.md says how).
set -u
out=${1:?output folder}
budget=${2:-570}
here=$(cd "$(dirname "$0")" && pwd)
deepep=$here/DeepEP
w=$out/work
mkdir -p "$w"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
step() { # step NAME MAX_SECONDS COMMAND...
    local name=$1 max=$2; shift 2
    local l; l=$(left); local t=$(( l - 15 < max ? l - 15 : max ))
    if [ "$t" -lt 20 ]; then echo "== $name: skipped (no time left)" | tee -a "$w/steps.txt"; return 1; fi
    echo "== $name (limit ${t}s, $(( $(date +%s) - start ))s in)" | tee -a "$w/steps.txt"
    local s=$(date +%s)
    timeout "$t" "$@" > "$w/$name.log" 2>&1; local rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - s ))s" | tee -a "$w/steps.txt"
    tail -n 25 "$w/$name.log"
    return $rc
}
# NVLink multicast stays off (this workplace's rule; DeepEP also sets NVSHMEM_DISABLE_NVLS).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1

step environment 60 bash "$here/environment.sh" "$w/environment.json"

if ! ls "$deepep"/deep_ep_cpp*.so >/dev/null 2>&1; then
    step build-deepep 240 bash -c "cd '$deepep' && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=$(nproc) python3 setup.py build_ext --inplace" || true
    (cd "$deepep" && tar czf "$out/deepep-build.tar.gz" deep_ep_cpp*.so 2>/dev/null) || true
fi

gpus=${GPUS:-2}
step ll-smoke 120 python3 "$here/measure_ll.py" --deepep "$deepep" --out "$w/ll-smoke" --cases smoke --trials 10 --warmup 2 --num-processes "$gpus"
step ll 300 python3 "$here/measure_ll.py" --deepep "$deepep" --out "$w/ll" --num-processes "$gpus"
step compute 200 python3 "$here/measure_compute.py" --out "$w/compute" --budget-s 150
step deepep-test-t128 150 bash -c "cd '$deepep/tests' && PYTHONPATH='$deepep' python3 test_low_latency.py --num-processes $gpus --num-tokens 128 --num-experts 256"
step deepep-test-t32 120 bash -c "cd '$deepep/tests' && PYTHONPATH='$deepep' python3 test_low_latency.py --num-processes $gpus --num-tokens 32 --num-experts 256"
step ll-maxtok128 120 python3 "$here/measure_ll.py" --deepep "$deepep" --out "$w/ll-maxtok128" --max-tokens 128 --only balanced-t,balanced-hook-settled --port 29518 --num-processes "$gpus"

(cd "$w" && tar czf "$out/results.tar.gz" .)
cp "$w/steps.txt" "$out/steps.txt"
echo "done in $(( $(date +%s) - start ))s"
