#!/usr/bin/env bash
# One sitting on one Hopper GPU: environment, DeepGEMM and FlashMLA builds, then every family of
# measure_kernels.py, each in its own process with its own time budget. Everything lands in
# OUT/work/ and is packed as OUT/results.tar.gz (also when a step fails or times out).
#
#   bash calibration/kernels/run_device.sh OUT [FAMILIES]      # FAMILIES: default all four
#
# Expects calibration/kernels/src/{DeepGEMM,FlashMLA} (see fetch_sources.sh) or their tarballs
# calibration/kernels/src/*.tar.gz. DEADLINE_S (default 540) bounds the whole sitting.
set -u
OUT=${1:?OUT folder}
FAMILIES=${2:-"act-quant expert-gemm proj-gemm flash-mla"}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$OUT/work
mkdir -p "$W"
T0=$(date +%s)
DEADLINE_S=${DEADLINE_S:-540}
left() { local l=$((DEADLINE_S - ($(date +%s) - T0))); [ $l -lt 20 ] && l=20; echo $l; }
pack() { tar -C "$OUT" -czf "$OUT/results.tar.gz" work; }
trap pack EXIT
exec > >(tee -a "$W/run.log") 2>&1
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 NVSHMEM_DISABLE_NVLS=1 TORCH_SYMM_MEM_DISABLE_MULTICAST=1

SRC=/tmp/kernels-src
mkdir -p $SRC
for t in "$HERE"/src/*.tar.gz; do [ -f "$t" ] && tar -C $SRC -xzf "$t"; done
for d in DeepGEMM FlashMLA; do [ -d "$HERE/src/$d" ] && [ ! -d "$SRC/$d" ] && cp -r "$HERE/src/$d" $SRC/; done

# ---- environment
python3 - "$SRC" > "$W/environment.json" <<'EOF'
import json, subprocess, sys, torch, platform
def sh(c):
    try: return subprocess.check_output(c, shell=True, stderr=subprocess.STDOUT, timeout=30).decode().strip()
    except Exception as e: return f"unavailable: {e}"
src = sys.argv[1]
print(json.dumps({
  "gpu": torch.cuda.get_device_name(0), "sm_count": torch.cuda.get_device_properties(0).multi_processor_count,
  "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
  "driver": sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader"),
  "clocks": sh("nvidia-smi --query-gpu=clocks.max.sm,clocks.max.mem,power.limit --format=csv"),
  "nvcc": sh("nvcc --version | tail -2"), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
  "triton": sh("python3 -c 'import triton; print(triton.__version__)'"), "python": platform.python_version(),
  "kernel": platform.release(),
  "deepgemm_commit": sh(f"cat {src}/DeepGEMM/COMMIT"), "deepgemm_cutlass": sh(f"cat {src}/DeepGEMM/CUTLASS_COMMIT"),
  "deepgemm_fmt": sh(f"cat {src}/DeepGEMM/FMT_COMMIT"),
  "flashmla_commit": sh(f"cat {src}/FlashMLA/COMMIT"), "flashmla_cutlass": sh(f"cat {src}/FlashMLA/CUTLASS_COMMIT"),
}, indent=1))
EOF
cat "$W/environment.json"
nvidia-smi > "$W/nvidia-smi.txt" 2>&1

# ---- builds, in parallel (16 cores)
# DeepGEMM's JIT parses includes and nvcc's version with std::regex, which crashes inside
# libstdc++'s locale facets in this image (collate<char> resolves to codecvt<char16_t>; a
# cuda-gdb backtrace of the first try is in calibration/kernels/README.md): the patch scans
# the strings by hand instead. Nothing else changes.
(cd $SRC/DeepGEMM && (patch -p1 < "$HERE/deepgemm-no-regex.patch" || git apply "$HERE/deepgemm-no-regex.patch")) > "$W/patch-deepgemm.log" 2>&1 || echo "patch failed"
build_dg() {  # $1: log name, rest: environment for the build
  local log=$1; shift
  (cd $SRC/DeepGEMM && rm -rf build && env "$@" DG_USE_LOCAL_VERSION=0 MAX_JOBS=8 TORCH_CUDA_ARCH_LIST=9.0a \
    timeout 300 python3 setup.py build > "$W/$log" 2>&1; echo "deepgemm build rc=$?" >> "$W/$log")
}
# The image's default C++ compiler for extensions (/opt/gcc) is not the one whose libstdc++
# python loads (/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33, GCC 13): built with it, the
# first masked GEMM call segfaults (2026-12-07, with and without the patch). Build with the
# system g++ where there is one.
need_dg=0; case " $FAMILIES " in *" expert-gemm "*|*" proj-gemm "*) need_dg=1;; esac
need_mla=0; case " $FAMILIES " in *" flash-mla "*) need_mla=1;; esac
if [ $need_dg = 0 ]; then true & elif [ -x /usr/bin/g++ ]; then build_dg build-deepgemm.log CXX=/usr/bin/g++ CC=/usr/bin/gcc & else build_dg build-deepgemm.log & fi
DG_PID=$!
[ $need_mla = 1 ] && (
  cd $SRC/FlashMLA
  # Only the SM90 dense decode path (DeepSeek-V3's BF16 KV cache): a minimal binding and source list.
  cat > csrc/api/api_dense.cpp <<'EOF'
#include <pybind11/pybind11.h>
#include "dense_decode.h"
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "FlashMLA (dense decode only, built by EPSim's calibration)";
    m.def("dense_decode_fwd", &dense_attn_decode_interface);
}
EOF
  python3 - <<'EOF'
import re
s = open("setup.py").read()
start = s.index("sources=[")
end = s.index("],", start)
s = s[:start] + '''sources=[
            "csrc/api/api_dense.cpp",
            "csrc/smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu",
            "csrc/smxx/decode/combine/combine.cu",
            "csrc/sm90/decode/dense/instantiations/bf16.cu",
        ''' + s[end:]
s = s.replace('subprocess.run(["git", "submodule", "update", "--init", "csrc/cutlass"])', '')
# CUDA 13 keeps libcu++ (cuda/std/...) under include/cccl.
s = s.replace('Path(this_dir) / "csrc" / "cutlass" / "include",', 'Path(this_dir) / "csrc" / "cutlass" / "include",\n            Path(CUDA_HOME) / "include" / "cccl",')
open("setup.py", "w").write(s)
EOF
  FLASH_MLA_DISABLE_SM100=1 FLASH_MLA_DISABLE_FP16=1 NVCC_THREADS=4 MAX_JOBS=4 \
    timeout 420 python3 setup.py build_ext --inplace > "$W/build-flashmla.log" 2>&1; echo "flashmla build rc=$?" >> "$W/build-flashmla.log"
) &
MLA_PID=$!

M="python3 $HERE/measure_kernels.py --out $W"
# Triton only: measure while the libraries build (CPU-bound; the GPU is idle).
case " $FAMILIES " in *" act-quant "*) timeout $(( $(left) > 120 ? 120 : $(left) )) $M --family act-quant --budget-s 90 > "$W/act-quant.log" 2>&1; echo "act-quant rc=$?";; esac

wait $DG_PID; tail -3 "$W/build-deepgemm.log"
DGLIB=$(ls -d $SRC/DeepGEMM/build/lib.* 2>/dev/null | head -1)
export PYTHONPATH=${DGLIB}:$SRC/FlashMLA:${PYTHONPATH:-}
export DG_JIT_CACHE_DIR=/tmp/dg-cache

if [ $need_dg = 1 ] && [ -n "$DGLIB" ]; then
  # Probe: one masked GEMM in a process of its own; on a crash, a host backtrace from cuda-gdb.
  (ldd $DGLIB/deep_gemm/_C*.so | grep -i "stdc\|gcc"; which g++ gcc; g++ --version | head -1;
   python3 -c "import torch, deep_gemm; print([l.split()[-1] for l in open('/proc/self/maps') if 'stdc++' in l][:1])") > "$W/toolchain.txt" 2>&1
  cat "$W/toolchain.txt"
  timeout 180 $M --family expert-gemm --quick --out $W/probe > "$W/probe.log" 2>&1; rc=$?
  echo "probe rc=$rc"; tail -5 "$W/probe.log"
  if [ $rc -ne 0 ]; then
    timeout 240 cuda-gdb -batch -ex run -ex bt -ex 'info sharedlibrary' --args python3 $HERE/measure_kernels.py \
      --family expert-gemm --quick --out $W/probe-gdb > "$W/probe-gdb.log" 2>&1
    grep -n -A30 "SIGSEGV\|signal" "$W/probe-gdb.log" | head -60
  fi
  # Warm DeepGEMM's JIT cache with 8 processes (one untimed call per shape), then time alone.
  pids=""
  for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
    timeout $(( $(left) > 200 ? 200 : $(left) )) $M --family expert-gemm --compile-only --shard $i/12 --out $W/compile > "$W/compile-eg-$i.log" 2>&1 & pids="$pids $!"
  done
  for i in 0 1 2 3; do
    timeout $(( $(left) > 200 ? 200 : $(left) )) $M --family proj-gemm --compile-only --shard $i/4 --out $W/compile > "$W/compile-pg-$i.log" 2>&1 & pids="$pids $!"
  done
  wait $pids; echo "compile pass done at $(( $(date +%s) - T0 )) s"; du -sh /tmp/dg-cache 2>/dev/null
  case " $FAMILIES " in *" expert-gemm "*) timeout $(( $(left) - 90 )) $M --family expert-gemm --budget-s $(( $(left) - 130 )) > "$W/expert-gemm.log" 2>&1; echo "expert-gemm rc=$?";; esac
  case " $FAMILIES " in *" proj-gemm "*) timeout $(( $(left) > 80 ? 80 : $(left) )) $M --family proj-gemm --budget-s 60 > "$W/proj-gemm.log" 2>&1; echo "proj-gemm rc=$?";; esac
fi

[ $need_mla = 1 ] && { wait $MLA_PID; tail -3 "$W/build-flashmla.log"; }
case " $FAMILIES " in *" flash-mla "*) timeout $(( $(left) - 10 )) $M --family flash-mla --budget-s $(( $(left) - 40 )) > "$W/flash-mla.log" 2>&1; echo "flash-mla rc=$?";; esac
echo "sitting done at $(( $(date +%s) - T0 )) s"
