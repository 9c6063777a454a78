#!/usr/bin/env bash
# Regenerates docs/answers.md and the pictures in docs/img/ from the shipped scenarios, so
# the page can never drift from the code. Usage:
#   scripts/answers.sh [OUTPUT_DIR]        (default: docs)
# EPSIM names the epsim binary (default: .build/release/epsim, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs}"
epsim="${EPSIM:-.build/release/epsim}"
if [ ! -x "$epsim" ]; then swift build -c release --product epsim >&2; fi
mkdir -p "$out/img"
page="$out/answers.md"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Runs an epsim command and writes it, with its output, as a shell transcript.
show() {
    echo '```'
    echo "\$ epsim $*"
    "$epsim" "$@" 2>/dev/null | grep -v '^simulated .* in .* s$' | grep -v '^wrote '
    echo '```'
}
sweep_csv() { "$epsim" sweep "$@" --no-store --format csv --jobs 1 2>/dev/null; }

# Sweep CSV (x, schedule none / deepseek-decode) -> the raw figures, then a table of what
# TBO saves and what the imbalance costs with and without it, relative to the first point.
effects() {
    echo '```'
    cut -d, -f2-8 "$1"
    echo '```'
    echo
    awk -F, -v name="$2" '
        NR > 1 { x = $2; s[x, $3] = $4; if (!(x in seen)) { seen[x] = 1; order[++n] = x } }
        END {
            printf "| %s | step, none (us) | step, TBO (us) | TBO saves (us) | vs first point, none (us) | vs first point, TBO (us) |\n", name
            print "|---:|---:|---:|---:|---:|---:|"
            x0 = order[1]
            for (i = 1; i <= n; i++) {
                x = order[i]; a = s[x, "none"]; b = s[x, "deepseek-decode"]
                printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f |\n", x, a, b, a - b, a - s[x0, "none"], b - s[x0, "deepseek-decode"]
            }
        }' "$1"
}

# Section 8: attention precision (Scenarios/decode-attention-precision.yaml).
precision_section() {
    local f=Scenarios/decode-attention-precision.yaml
    sweep_csv "$f" --vary workload.kv_length=1024,2048,4096,8192,16384 --vary model.attention_dtype=bf16,fp8 \
        --vary model.kv_cache_dtype=bf16,fp8 --vary schedule=none,deepseek-decode > "$tmp/precision.csv"
    # The two ends (all BF16, DeepSeek's; all FP8), with and without overlap, for the plot.
    awk -F, 'NR == 1 { print "kv_length,step_latency_us,p"; next }
        $3 == $4 { print $2 "," $6 "," toupper($3) ($5 == "none" ? " no TBO" : " TBO") }' "$tmp/precision.csv" > "$tmp/precision-plot.csv"
    "$epsim" plot --csv "$tmp/precision-plot.csv" --x kv_length --y step_latency_us --series p \
        --svg "$out/img/attention-precision.svg" --title "EP 16 decode: step latency against context, by attention precision" >/dev/null
    cat <<'EOF'

## 8. What does BF16 core attention cost a decode step, with and without overlap?

`Scenarios/decode-attention-precision.yaml`: DeepSeek-V3 decode at EP 16 (2 nodes of 8
H800s), 8 MoE layers, 128 requests per rank, roofline costs. DeepSeek serves core attention
in BF16 with a BF16 KV cache (the defaults, `model.attention_dtype` and
`model.kv_cache_dtype`); FP8 for either is the what-if. BF16 halves the peak that core
attention's FLOPs run at, and a BF16 cache doubles the bytes it reads, so which one matters
depends on whether ATTN1 is bound by compute or by memory at that context length. Step
latency (us):

EOF
    awk -F, '
        NR > 1 { k = $2; key = $3 "/" $4; s[k, key, $5] = $6; if (!(k in seen)) { seen[k] = 1; ks[++n] = k } }
        END {
            print "| kv_length | BF16/BF16, no TBO | BF16/BF16, TBO | FP8 attention, no TBO | FP8 attention, TBO | FP8 cache, no TBO | FP8 cache, TBO | FP8/FP8, no TBO | FP8/FP8, TBO | BF16/BF16 over FP8/FP8, no TBO | the same, TBO |"
            print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                k = ks[i]
                a = s[k, "bf16/bf16", "none"]; b = s[k, "bf16/bf16", "deepseek-decode"]
                c = s[k, "fp8/fp8", "none"]; d = s[k, "fp8/fp8", "deepseek-decode"]
                printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %+.1f%% | %+.1f%% |\n", k, a, b,
                    s[k, "fp8/bf16", "none"], s[k, "fp8/bf16", "deepseek-decode"], s[k, "bf16/fp8", "none"], s[k, "bf16/fp8", "deepseek-decode"],
                    c, d, 100 * (a / c - 1), 100 * (b / d - 1)
            }
        }' "$tmp/precision.csv"
    cat <<'EOF'

"FP8 attention" keeps the BF16 cache and computes in FP8; "FP8 cache" keeps BF16 compute.
Where one column equals BF16/BF16, ATTN1 is bound by the other resource at that context.
The last two columns are what DeepSeek's precision costs against all-FP8 attention, with and
without two-micro-batch overlap, relative to each one's own step; in absolute terms:
EOF
    awk -F, '
        NR > 1 { k = $2; key = $3 "/" $4; s[k, key, $5] = $6; if (!(k in seen)) { seen[k] = 1; ks[++n] = k } }
        END {
            print ""
            print "| kv_length | BF16 over FP8, no TBO (us) | BF16 over FP8, TBO (us) | hidden by TBO |"
            print "|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                k = ks[i]
                a = s[k, "bf16/bf16", "none"] - s[k, "fp8/fp8", "none"]
                b = s[k, "bf16/bf16", "deepseek-decode"] - s[k, "fp8/fp8", "deepseek-decode"]
                printf "| %s | %.1f | %.1f | %.1f%% |\n", k, a, b, (a > 0 ? 100 * (a - b) / a : 0)
            }
            print ""
        }' "$tmp/precision.csv"
    cat <<'EOF'
Whether overlap pays at all at this size: compare the TBO columns with the no-TBO ones
above (question 5 shows where it does).

The picture: all BF16 (DeepSeek's) against all FP8, with (TBO) and without overlap.

![step latency against context, by attention precision](img/attention-precision.svg)
EOF
}

# Sections 9-12: decode as production runs it (Scenarios/decode-*.yaml, Scenarios/host-reports/).
# Sweep CSV with axes (x, schedule) -> a table of step latency per schedule at each x.
by_schedule() {
    awk -F, -v name="$2" -v cols="$3" '
        NR > 1 { x = $2; s[x, $3] = $4; if (!(x in seen)) { seen[x] = 1; order[++n] = x } }
        END {
            m = split(cols, c, " ")
            printf "| %s |", name; for (j = 1; j <= m; j++) printf " %s (us) |", c[j]; printf " %s over %s |\n", c[m], c[1]
            printf "|---:|"; for (j = 1; j <= m; j++) printf "---:|"; print "---:|"
            for (i = 1; i <= n; i++) {
                x = order[i]; printf "| %s |", x
                for (j = 1; j <= m; j++) printf " %.1f |", s[x, c[j]]
                printf " %+.1f%% |\n", 100 * (s[x, c[m]] / s[x, c[1]] - 1)
            }
        }' "$1"
}

mtp_section() {
    local f=Scenarios/decode-mtp.yaml
    sweep_csv "$f" --vary workload.tokens_per_rank=16,32,64,128 --vary workload.draft_tokens=0,1,2 --vary schedule=none,deepseek-decode > "$tmp/mtp.csv"
    awk -F, 'NR == 1 { print "requests_per_rank,accepted_tokens_per_s_per_gpu,series"; next }
        { print $2 "," $7 "," "d=" $3 ($4 == "none" ? " no TBO" : " TBO") }' "$tmp/mtp.csv" > "$tmp/mtp-plot.csv"
    "$epsim" plot --csv "$tmp/mtp-plot.csv" --x requests_per_rank --y accepted_tokens_per_s_per_gpu --series series \
        --svg "$out/img/decode-mtp.svg" --title "EP 16 decode: accepted tokens/s per GPU against requests per rank" >/dev/null
    cat <<'EOF'

## 9. What do MTP draft tokens buy, and does overlap still pay?

`Scenarios/decode-mtp.yaml`: DeepSeek-V3 decode at EP 16 (2 nodes of 8 H800s), 8 MoE layers,
context 4096, roofline costs, `d` draft tokens per request at DeepSeek's 85% acceptance. Each
request brings `1 + d` tokens to attention, routing, dispatch, the experts and combine, but its
KV cache is read once, so a draft token costs less than a request. Step latency and accepted
tokens per second per GPU:

| requests per rank | d | step, no TBO (us) | step, TBO (us) | accepted tok/s/GPU, no TBO | accepted tok/s/GPU, TBO | TBO gain in throughput |
|---:|---:|---:|---:|---:|---:|---:|
EOF
    awk -F, 'NR > 1 { k = $2 "," $3; s[k, $4] = $5; a[k, $4] = $7; if (!(k in seen)) { seen[k] = 1; ks[++n] = k } }
        END { for (i = 1; i <= n; i++) { k = ks[i]; split(k, p, ",")
            printf "| %s | %s | %.1f | %.1f | %.0f | %.0f | %+.1f%% |\n", p[1], p[2], s[k, "none"], s[k, "deepseek-decode"],
                a[k, "none"], a[k, "deepseek-decode"], 100 * (a[k, "deepseek-decode"] / a[k, "none"] - 1) } }' "$tmp/mtp.csv"
    cat <<'EOF'

At a fixed number of requests a draft token lengthens the step but raises accepted tokens
per GPU; against the same number of tokens without drafts (twice the requests at d = 1), it
reads half the KV caches. Whether two-micro-batch overlap pays is the last column: where
it is negative, overlap's second read of the expert weights per layer costs more than the
communication it hides (the roofline MLP is bound by weight bytes at these batches), and
draft tokens, by raising the tokens per request, narrow that loss.

![accepted tokens per second per GPU against requests](img/decode-mtp.svg)
EOF
}

capacity_section() {
    local f=Scenarios/decode-capacity.yaml
    sweep_csv "$f" --vary workload.max_dispatch_tokens_per_rank=32,128,256,508 --vary costs.expert_gemm=masked,padded \
        --vary schedule=none,deepseek-decode > "$tmp/capacity.csv"
    cat <<'EOF'

## 11. What does DeepEP's dispatch capacity cost the expert GEMM?

`Scenarios/decode-capacity.yaml`: DeepSeek-V3 decode at EP 16, 32 requests per rank, with
`workload.max_dispatch_tokens_per_rank` `C` from 32 to 508 (DeepEP's limit at the default
queue-pair depth is 511, and `16 x C` must be a multiple of 4). `masked` is DeepGEMM's masked
grouped GEMM (received rows only); `padded` computes all `16 x C` rows of each of the 16
local experts, as vLLM's DeepEP V2 decode path did before pull request 46404. Step latency:

| C | masked, no TBO (us) | masked, TBO (us) | padded, no TBO (us) | padded, TBO (us) | padded over masked, no TBO |
|---:|---:|---:|---:|---:|---:|
EOF
    awk -F, 'NR > 1 { k = $2; s[k, $3, $4] = $5; if (!(k in seen)) { seen[k] = 1; ks[++n] = k } }
        END { for (i = 1; i <= n; i++) { k = ks[i]
            printf "| %s | %.1f | %.1f | %.1f | %.1f | %.2fx |\n", k, s[k, "masked", "none"], s[k, "masked", "deepseek-decode"],
                s[k, "padded", "none"], s[k, "padded", "deepseek-decode"], s[k, "padded", "none"] / s[k, "masked", "none"] } }' "$tmp/capacity.csv"
    cat <<'EOF'

Masked, the capacity changes nothing but what fits; padded, the expert GEMM grows linearly
with `C` and dominates the step, the report's failure, and two micro-batches double it (each
micro-batch computes its own padded buffer).
EOF
}

serving_section() {
    local data=docs/data/serve-ep128.csv
    cat <<'EOF'

## 13. What does imbalance cost a decode deployment over time, and which balancer gets it back?

`Scenarios/serving/serve-ep128.yaml`: DeepSeek-V3 decode at EP 128 (16 nodes of 8 H800s,
two micro-batches), requests arriving at 600 per second (Poisson) with lognormal prompts
(median 2,000 KV tokens, 5% above 7,000) and lognormal outputs (median 200 tokens), at most
128 per rank; 2,000 decode steps, the first 600 left out; 4 of the 58 MoE layers simulated
per step and the rest extrapolated (0.2% off the full step, [model.md](model.md#serving)).
Round-robin assignment against DeepSeek's KV-balanced one (`least-kv`), from
`scripts/serve-ep128.sh` (about 7 minutes on 2 cores; it writes `docs/data/serve-ep128.csv`, which this
page reads):

EOF
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { row[++n] = $0 }
        END {
            print "| policy | tokens/s/GPU | TPOT p50 (us) | TPOT p99 (us) | ITL p99 (us) | mean step (us) | balanced step (us) | step time lost to imbalance | largest rank over mean: requests | KV tokens |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (r = 1; r <= n; r++) { split(row[r], f, ",")
                printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f%% | %.3f | %.3f |\n", f[c["policy"]], f[c["tokens_per_s_per_gpu"]],
                    f[c["tpot_p50_us"]], f[c["tpot_p99_us"]], f[c["itl_p99_us"]], f[c["mean_step_us"]], f[c["balanced_step_us"]],
                    100 * f[c["imbalance_share"]], f[c["batch_max_over_mean"]], f[c["kv_max_over_mean"]] } }' "$data"
    cat <<'EOF'

How to read it. The load is an open loop below capacity, so both policies carry the same
tokens per second; what imbalance costs shows in the step time, and so in every request's
TPOT. Round-robin deals requests out in turn, blind to their lengths: the rank that happens
to hold the longest prompts has the slowest attention, every rank waits for it at each
layer's dispatch, and the step is the balanced one plus that lag. `least-kv` evens the KV
tokens instead (its largest rank holds far less KV over the mean) at the price of uneven
request counts, which cost less here: a rank's expert work depends on the tokens routed to
it from every rank, not on its own batch, and its attention mostly on the KV it reads. The
step time lost to imbalance is measured against each step's own balanced counterfactual
(the same requests spread evenly, simulated beside it). The picture shows the distribution
of TPOT per policy and, per step, the largest rank's KV tokens over the mean rank's:

![TPOT distribution and KV spread per balancer](img/serve-ep128.svg)

Try another balancer or load with `epsim serve Scenarios/serving/serve-ep16.yaml --vary
serving.policy=round-robin,random,least-requests,least-kv` (EP 16, seconds), or
`--vary serving.arrivals.rate_per_s=...`.
EOF
}

sbo_section() {
    local f=Scenarios/decode-sbo.yaml
    sweep_csv "$f" --vary workload.tokens_per_rank=16,32,64,128,256 --vary schedule=none,sbo,deepseek-decode > "$tmp/sbo.csv"
    "$epsim" plot --csv "$tmp/sbo.csv" --x workload.tokens_per_rank --y step_latency_us --series schedule \
        --svg "$out/img/decode-sbo.svg" --title "EP 16 decode: step latency against requests, by overlap" >/dev/null
    cat <<'EOF'

## 12. Single-batch overlap against two micro-batches

`Scenarios/decode-sbo.yaml`: DeepSeek-V3 decode at EP 16, 8 MoE layers, the `sbo` preset
(shared experts beside the dispatch RECV; the combine SEND on 3 SMs, released when the MLP
reaches its down projection) against no overlap and two micro-batches (`deepseek-decode`).
Step latency:

EOF
    awk -F, 'NR > 1 { x = $2; s[x, $3] = $4; if (!(x in seen)) { seen[x] = 1; o[++n] = x } }
        END {
            print "| requests per rank | none (us) | sbo (us) | deepseek-decode (us) | sbo over none | TBO over none |"
            print "|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) { x = o[i]
                printf "| %s | %.1f | %.1f | %.1f | %+.1f%% | %+.1f%% |\n", x, s[x, "none"], s[x, "sbo"], s[x, "deepseek-decode"],
                    100 * (s[x, "sbo"] / s[x, "none"] - 1), 100 * (s[x, "deepseek-decode"] / s[x, "none"] - 1) } }' "$tmp/sbo.csv"
    cat <<'EOF'

SBO hides the shared experts behind the dispatch wait and a third of the MLP behind the
combine send without splitting the batch, so it reads the expert weights once; two
micro-batches read them twice, which is why SBO exists for batches too small for TBO.

![step latency against requests, by overlap](img/decode-sbo.svg)
EOF
}

host_section() {
    sweep_csv Scenarios/decode-host.yaml --vary host.mode=graph,eager --vary host.launch_us=6.5,50,200 --vary schedule=none,deepseek-decode > "$tmp/host.csv"
    cat <<'EOF'

## 10. What does the host cost a decode step, and which public host reports come out?

`Scenarios/decode-host.yaml`: DeepSeek-V3 decode at EP 16, 8 MoE layers, 128 requests per
rank, 4 steps with 100 us of host work between them, launched by CUDA-graph replay (17.8 us,
measured on one H100 host) or eagerly at `launch_us` per EPSim kernel (6.5 us is one PyTorch
op, measured; an EPSim kernel stands for a dozen or more). Step latency (max over steps):

| mode | launch_us | no TBO (us) | TBO (us) |
|---|---:|---:|---:|
EOF
    awk -F, 'NR > 1 { k = $2 "," $3; s[k, $4] = $5; if (!(k in seen)) { seen[k] = 1; ks[++n] = k } }
        END { for (i = 1; i <= n; i++) { k = ks[i]; split(k, p, ",")
            if (p[1] == "graph" && p[2] != "6.5") continue
            printf "| %s | %s | %.1f | %.1f |\n", p[1], (p[1] == "graph" ? "-" : p[2]), s[k, "none"], s[k, "deepseek-decode"] } }' "$tmp/host.csv"
    cat <<'EOF'

Graph replay costs one launch per step; eager launches cost nothing while the host stays
ahead of the GPU and everything once it falls behind, sooner with two micro-batches (twice
the kernels per layer).

**sglang issue 6420** (dispatch time growing with the layer index, 16 H20 over RoCE):
`Scenarios/host-reports/slow-host.yaml` makes the host pace the GPU (200 us per eager launch)
and rank 3's host 10% slower. The other ranks' dispatch per layer:

EOF
    "$epsim" run Scenarios/host-reports/slow-host.yaml --no-store --csv "$tmp/slow.csv" >/dev/null 2>&1
    awk -F, 'NR > 1 && $6 == "DISPATCH" && $3 != 3 { w[$4] += $10; d[$4] += $9 - $8; n[$4]++; if ($4 > L) L = $4 }
        END { print "| layer | dispatch (us) | of which wait (us) |"; print "|---:|---:|---:|"
            for (l = 0; l <= L; l++) printf "| %d | %.1f | %.1f |\n", l, d[l] / n[l], w[l] / n[l] }' "$tmp/slow.csv"
    cat <<'EOF'

The wait appears and jumps after the first layer, then stays flat: each layer's combine
re-aligns the ranks, so a slower host costs the same every layer. The report's growth over
the layers needs a lag that accumulates through the arrival gating (for example CPU-side
progress of the RDMA transport), which EPSim does not model.

**DeepEP issue 138** (first dispatch after 100 ms idle 0.68-2.58 ms, 0.36 ms steady):
`Scenarios/host-reports/idle-wake.yaml`, step 1 after 100 ms idle with each rank's wake-up
drawn in the measured 137-217 us, against the same with a 100 us gap (below the 10 ms
threshold, no wake-up):

EOF
    "$epsim" run Scenarios/host-reports/idle-wake.yaml --no-store --csv "$tmp/idle.csv" >/dev/null 2>&1
    sed 's/step_gap_us: 100000/step_gap_us: 100/' Scenarios/host-reports/idle-wake.yaml > "$tmp/busy.yaml"
    "$epsim" run "$tmp/busy.yaml" --no-store --csv "$tmp/busy.csv" >/dev/null 2>&1
    for c in idle busy; do
        awk -F, -v c=$c 'NR > 1 && $2 == 1 && $4 == 0 && $6 == "DISPATCH" { d += $9 - $8; w += $10; n++; if ($9 - $8 > m) m = $9 - $8 }
            END { printf "%s,%.1f,%.1f,%.1f\n", c, d / n, m, w / n }' "$tmp/$c.csv"
    done | awk -F, 'BEGIN { print "| gap before step 1 | first dispatch, mean over ranks (us) | longest (us) | mean wait (us) |"; print "|---|---:|---:|---:|" }
        { printf "| %s | %s | %s | %s |\n", ($1 == "idle" ? "100 ms (wake-up)" : "100 us"), $2, $3, $4 }'
    cat <<'EOF'

In direction: the first dispatch after idle waits for the latest-waking rank. The size is
the wake-up's spread across ranks; the report's milliseconds include NVSHMEM and NIC state a
single-GPU measurement does not see.

**InferenceX pull request 2422** (entry skew charged to the LL combine, 113.4 vs 87.4 us at 1
token, no difference at 32): `Scenarios/host-reports/entry-skew.yaml`, 20 iterations of one
MoE layer, each entered after a host jitter drawn in 0-52 us per rank:

EOF
    for t in 1 32; do
        for j in skew none; do
            if [ $j = skew ]; then cp Scenarios/host-reports/entry-skew.yaml "$tmp/e.yaml"; else grep -v jitter_us Scenarios/host-reports/entry-skew.yaml > "$tmp/e.yaml"; fi
            sed -i "s/tokens_per_rank: 1,/tokens_per_rank: $t,/" "$tmp/e.yaml"
            "$epsim" run "$tmp/e.yaml" --no-store --csv "$tmp/e.csv" >/dev/null 2>&1
            awk -F, -v t=$t -v j=$j 'NR > 1 && ($6 == "DISPATCH" || $6 == "COMBINE") { d[$6] += $9 - $8; n[$6]++ }
                END { printf "%s,%s,%.1f,%.1f\n", t, j, d["DISPATCH"] / n["DISPATCH"], d["COMBINE"] / n["COMBINE"] }' "$tmp/e.csv"
        done
    done | awk -F, 'BEGIN { print "| tokens per rank | entry | dispatch, mean (us) | combine, mean (us) |"; print "|---:|---|---:|---:|" }
        { printf "| %s | %s | %s | %s |\n", $1, ($2 == "skew" ? "jitter 0-52 us" : "aligned"), $3, $4 }'
    cat <<'EOF'

In direction at 1 token: the skew lands on the first kernel that gates on other ranks. In
EPSim that is the dispatch, not the combine the report charged it to (every kernel is
arrival-gated, and the dispatch is the first), and part of it remains at 32 tokens, where the
measurement shows none: EPSim absorbs skew only where a rank has its own work to do meanwhile.
EOF
}

# Section 7: the attention sweep at EP 128 (Scenarios/attention-sweep/). Every figure is
# computed here from the runs; the prose around them only names the mechanism.
attn_dir=Scenarios/attention-sweep
attn_xs="108 130 164.3 200"

# The value of a `key: N` in a scenario file (first match).
yaml_number() { sed -n "s/.*\b$2: \([0-9.]*\).*/\1/p" "$1" | head -n 1; }

# A copy of a scenario on the ideal network.
ideal_copy() { { cat "$1"; echo 'network: {model: ideal}'; } > "$2"; }

# Sweep CSV with `costs.attn1_us` as `{a: X, b: X}` -> the same with a numeric `attn1_us`.
numeric_attention() {
    sed -E -e '1s/costs\.attn1_us/attn1_us/' -e 's/"\{a: ([0-9.]+), b: [0-9.]+\}"/\1/' "$1"
}

# `epsim explain` output -> one table row: the critical path's links by kind.
path_row() {
    awk -v x="$1" -v net="$2" -v per_rank="$3" '
        /^critical path/ { p = 1; next }
        /^per rank/ { p = 0 }
        p && $1 ~ /^[0-9.]+$/ && $2 ~ /^[0-9.]+$/ {
            d = $3; link = $0
            if (link ~ /launch gap before/) k = "rest"
            else if (link ~ /message .*\(combine/) k = "comb"
            else if (link ~ /message .*\(dispatch/) k = "disp"
            else if (link ~ /ATTN1\(/) k = "attn1"
            else if (link ~ /MLP\(/) k = "mlp"
            else k = "rest"
            n[k]++; t[k] += d; total += d
        }
        END {
            printf "| %s | %s | %.3f | %d | %.3f | %.1f%% | %d | %.3f | %d | %.3f | %d | %.3f | %.3f |\n", x, net, total,
                n["attn1"], t["attn1"], 100 * (1 - t["attn1"] / (per_rank * x)), n["comb"], t["comb"], n["disp"], t["disp"],
                n["mlp"], t["mlp"], t["rest"]
        }' "$4"
}

attention_section() {
    local first="$attn_dir/attn1-108.yaml" last="$attn_dir/attn1-200.yaml"
    local layers ranks per_node windows
    layers=$(yaml_number "$first" moe_layers)
    ranks=$(yaml_number "$first" ranks)
    per_node=$(yaml_number "$first" gpus_per_node)
    windows=$((2 * layers))
    # The h800 preset's NIC (the closed form below needs it; no command prints a preset).
    local rdma_gbps rdma_latency
    rdma_gbps=$(awk '/static let h800/,/}\(\)/' Sources/EPSim/Model/Presets.swift | sed -n 's/.*h\.rdmaGBps = \([0-9.]*\).*/\1/p')
    rdma_latency=$(awk '/static let h800/,/}\(\)/' Sources/EPSim/Model/Presets.swift | sed -n 's/.*h\.rdmaLatencyMicros = \([0-9.]*\).*/\1/p')
    if [ -z "$rdma_gbps" ] || [ -z "$rdma_latency" ]; then echo "answers.sh: the h800 preset's RDMA figures were not found" >&2; exit 1; fi

    : > "$tmp/shipped.csv"
    for x in $attn_xs; do
        sweep_csv "$attn_dir/attn1-$x.yaml" --vary network.model=ports,ideal | awk -F, -v x="$x" 'NR > 1 { print x "," $2 "," $3 "," $5 "," $6 "," $7 }' >> "$tmp/shipped.csv"
    done
    # ports: every 10 us from 100 to 240, every 2 us from 150 to 200 (around the knee);
    # ideal (a straight line): every 10 us. The picture takes the 10-us points of both.
    local grid="" fine="" v
    for v in $(seq 100 10 240); do grid="$grid${grid:+,}{a: $v, b: $v}"; done
    for v in $(seq 100 10 140) $(seq 150 2 200) $(seq 210 10 240); do fine="$fine${fine:+,}{a: $v, b: $v}"; done
    sweep_csv "$first" --vary "costs.attn1_us=$fine" > "$tmp/attention-fine-raw.csv"
    numeric_attention "$tmp/attention-fine-raw.csv" | cut -d, -f2-7 | awk -F, 'NR > 1 { print "ports," $0 }' > "$tmp/attention-fine.csv"
    sweep_csv "$first" --vary network.model=ideal --vary "costs.attn1_us=$grid" > "$tmp/attention-ideal-raw.csv"
    {
        echo "network.model,attn1_us,step_latency_us,rank_latency_mean_us,dispatch_wait_us,combine_wait_us,exposed_comm_us"
        awk -F, '$2 % 10 == 0' "$tmp/attention-fine.csv"
        numeric_attention "$tmp/attention-ideal-raw.csv" | cut -d, -f2-8 | tail -n +2
    } > "$tmp/attention-sweep.csv"
    "$epsim" plot --csv "$tmp/attention-sweep.csv" --x attn1_us --y step_latency_us --series network.model --svg "$out/img/tbo-attention-ep128.svg" --title "EP 128 decode, TBO: step latency against ATTN1 per micro-batch" >/dev/null
    for x in 108 200; do
        "$epsim" plot "$attn_dir/attn1-$x.yaml" --layers 3-4 --svg "$out/img/tbo-attention-ep128-x$x.svg" --title "EP 128 decode, ATTN1 = $x us, layers 3-4" >/dev/null
    done
    "$epsim" run "$first" --no-store --csv "$tmp/kernels-first.csv" >/dev/null 2>&1
    for x in $attn_xs; do
        "$epsim" explain --full "$attn_dir/attn1-$x.yaml" > "$tmp/explain-$x-ports.txt" 2>/dev/null
        ideal_copy "$attn_dir/attn1-$x.yaml" "$tmp/attn1-$x-ideal.yaml"
        "$epsim" explain --full "$tmp/attn1-$x-ideal.yaml" > "$tmp/explain-$x-ideal.txt" 2>/dev/null
    done

cat <<'EOF'

## 7. Why does longer attention barely lengthen a TBO decode step at EP 128?

`Scenarios/attention-sweep/attn1-{108,130,164.3,200}.yaml`: DeepSeek-V3 decode at EP 128
(16 nodes of 8 H800s, one NIC per GPU), 8 MoE layers, 128 tokens per rank (64 per
micro-batch), uniform routing, `deepseek-decode` (two micro-batches, TBO). Every time comes
from the presets except the core attention, `ATTN1`, set to X us for each micro-batch. Step
latency on the default `ports` network and on `ideal` (every flow alone on its path):

EOF
    awk -F, -v w="$windows" '
        { x = $1; s[x, $2] = $3; dw[x, $2] = $4; cw[x, $2] = $5; if (!(x in seen)) { seen[x] = 1; order[++n] = x } }
        END {
            print "| X (us) | step, ports (us) | step, ideal (us) | ports - ideal (us) | ports: + vs previous (us) | ideal: + vs previous (us) | ideal: + / (" w " x dX) | share of the added attention hidden on ports |"
            print "|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                x = order[i]; p = s[x, "ports"]; q = s[x, "ideal"]
                if (i == 1) { printf "| %s | %.3f | %.3f | %.3f | | | | |\n", x, p, q, p - q; continue }
                y = order[i - 1]; dp = p - s[y, "ports"]; dq = q - s[y, "ideal"]
                printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.6f | %.1f%% |\n", x, p, q, p - q, dp, dq, dq / (w * (x - y)), 100 * (1 - dp / dq)
            }
        }' "$tmp/shipped.csv"
cat <<'EOF'

Where each rank's step goes (mean over ranks of each rank's total over the step):

EOF
    awk -F, '
        BEGIN { print "| X (us) | network | dispatch wait (us) | combine wait (us) | exposed communication (us) |"; print "|---:|---|---:|---:|---:|" }
        { printf "| %s | %s | %.3f | %.3f | %.3f |\n", $1, $2, $4, $5, $6 }' "$tmp/shipped.csv"
cat <<'EOF'

**Where the attention goes.** In `deepseek-decode` one stream runs everything, and DeepEP's
two buffers fix the order D(A) C(A) D(B) C(B) in every layer: a micro-batch's SEND-D
cannot start before the other micro-batch's RECV-C has ended. So the chain SEND-D,
dispatch flight, RECV-D, MLP, SEND-C, combine flight, RECV-C, then the other
micro-batch's SEND-D, is strictly serial, and attention only fills the flights (the
schedule in [model.md](model.md#deepseek-decode-two-micro-batches-low-latency-hook-mode)):
SHARED and ATTN0 of one micro-batch run while the other's dispatch is in flight, its ATTN1
while the other's combine is in flight. A combine window therefore costs the longer of
ATTN1 (plus the launch gaps around it) and the combine flight. Of a step's 2 x 8 ATTN1
kernels, 2 x 8 - 1 sit in such windows; the other is the first micro-batch's first ATTN1,
before any communication, which every step pays in full (the last combine has no ATTN1
left to hide behind). The MLP, the SEND and RECV kernels and the dispatch flights are in
series whatever X is.

The critical path (`epsim explain`) of each file, by kind of link: the ATTN1 kernels on it,
and the share of one rank's ATTN1 time (2 x 8 kernels of X us) it leaves off (hidden); the
combine and dispatch flights (message links: from the end of a SEND to the last arrival);
the MLPs; the rest (ATTN0, SHARED, the SEND and RECV kernels' own parts, launch gaps):

EOF
    echo "| X (us) | network | path (us) | ATTN1 links | ATTN1 (us) | attention hidden | combine flights | combine flight (us) | dispatch flights | dispatch flight (us) | MLP links | MLP (us) | rest (us) |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for x in $attn_xs; do
        for net in ports ideal; do path_row "$x" "$net" "$windows" "$tmp/explain-$x-$net.txt"; done
    done
cat <<'EOF'

One micro-batch's half of a layer on the critical path, at the smallest and the largest X
on `ports` (from the first SEND-D(A) of layer 1 to its RECV-C(A)):

EOF
    for x in 108 200; do
        echo '```'
        echo "\$ epsim explain --full $attn_dir/attn1-$x.yaml   (excerpt)"
        sed -n 1p "$tmp/explain-$x-ports.txt"
        awk '/^critical path/ { p = 1; next } p && /^start_us/ { print; exit }' "$tmp/explain-$x-ports.txt"
        awk '/SEND-D\(A\) layer 1/ { p = 1 } p { print } p && /RECV-C\(A\) layer 1/ && !/launch gap/ { exit }' "$tmp/explain-$x-ports.txt"
        echo '```'
    done
cat <<'EOF'

**The closed form.** On `ports` a rank's RDMA egress serves its flows in processor
sharing: its combine flows (one to every rank off its node) share it, and the last of them
finishes only when it has sent all its remote rows. The latest flags of a window therefore
come from the rank with the most rows to return (the one that received the most tokens in
dispatch), at the end of its largest flows. With its rows `R`, `2H`-byte rows, the
expected share `(N - G) / N` of them off-node (uniform routing, `G` ranks per node), the
NIC's bandwidth `B` and latency `L`, data moving from the start of the SEND-C (which lasts
`S`), and a launch gap `g` before and after ATTN1, a window hides ATTN1, on the ranks that
get those latest flags, as long as

```
X + 2g  <=  L + R x 2H x (N - G)/N / B  -  S        (the combine flight after the SEND-C)
```

(on `ideal` the flight is one flow's `L + bytes / B`, with only the rows for one rank). Per
window of the run at the smallest X on `ports`, with the heaviest sender's `R` and `S` from
its kernels and the `h800` preset's NIC:

EOF
    awk -F, -v L="$rdma_latency" -v B="$rdma_gbps" -v N="$ranks" -v G="$per_node" '
        NR == 1 { next }
        $3 == 0 && $4 == 0 && $5 == "A" && $6 == "ATTN0" { attn0_end = $9 }
        $3 == 0 && $4 == 0 && $5 == "A" && $6 == "ATTN1" { attn1_start = $8 }
        $6 == "SEND-C" && $3 == 0 && $4 > last_layer { last_layer = $4 }
        $6 == "SEND-C" {
            key = $4 " " $5
            if (!(key in best) || $11 + 0 > best[key]) { best[key] = $11 + 0; dur[key] = $9 - $8; rows[key] = $13 }
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        }
        END {
            g = attn1_start - attn0_end
            printf "```\nNIC: B = %s GB/s, L = %s us; launch gap g = %.3f us; off-node share (N - G)/N = %d/%d\n", B, L, g, N - G, N
            print "window (layer, micro-batch)  R (rows)  R x 2H (bytes)  S (us)  flight after SEND-C (us)  X* = flight - 2g (us)"
            lo = 1e18; hi = -1e18
            for (i = 1; i <= n; i++) {
                k = order[i]; flight = L + best[k] * (N - G) / N / (B * 1000) - dur[k]; xs = flight - 2 * g
                split(k, p, " ")
                if (p[1] == last_layer && p[2] == "B") continue
                printf "%27s  %8d  %14d  %6.3f  %24.3f  %21.3f\n", "layer " p[1] ", " p[2], rows[k], best[k], dur[k], flight, xs
                sum += xs; if (xs < lo) lo = xs; if (xs > hi) hi = xs
            }
            printf "predicted crossover X*: %.1f us (mean over the %d windows; from %.1f to %.1f)\n```\n", sum / (n - 1), n - 1, lo, hi
            print sum / (n - 1), lo, hi > "/dev/stderr"
        }' "$tmp/kernels-first.csv" 2> "$tmp/predicted.txt"
cat <<'EOF'

This is the latest flight of a window. In processor sharing a sender's smaller flows finish
before its larger ones, so many receivers' last flag comes earlier (and their SEND-C
does not end with the heaviest sender's): they expose their ATTN1 at a smaller X. The
windows' `X*` differ too, so the step's slope turns up over a range of X, not at one
point. Sweeping X from 100 to 240 us (the picture in steps of 10 on both networks; the
slopes below on `ports` also in steps of 2 from 150 to 200):

![step latency against attention, EP 128](img/tbo-attention-ep128.svg)

Two layers of the step at the smallest and the largest X (`epsim plot FILE --layers 3-4`;
above 16 ranks the timeline draws one band for all 128 ranks, from the earliest start to
the latest end of each kernel with the median solid, and the three slowest ranks in full).
Look at the combine RECV after each ATTN1: hatched where it spins waiting for the combine's
last flag while attention already ended, thin where ATTN1 outlasted the flight.

![layers 3-4 at X = 108](img/tbo-attention-ep128-x108.svg)

![layers 3-4 at X = 200](img/tbo-attention-ep128-x200.svg)

EOF
    awk -F, -v pred="$(cut -d' ' -f1 "$tmp/predicted.txt")" -v predlo="$(cut -d' ' -f2 "$tmp/predicted.txt")" -v w="$windows" '
        FILENAME == fine { x[++n] = $2; s[n] = $3 }
        FILENAME != fine && NR > 1 && $1 == "ideal" { xi[++m] = $2; si[m] = $3 }
        END {
            lo = (s[2] - s[1]) / (x[2] - x[1]); hi = (s[n] - s[n - 1]) / (x[n] - x[n - 1])
            ilo = (si[2] - si[1]) / (xi[2] - xi[1]); ihi = (si[m] - si[m - 1]) / (xi[m] - xi[m - 1])
            printf "- `ideal`: the step grows by %.3f us per us of ATTN1 at the low end and %.3f at the high end (%d windows + the first ATTN1 = %d kernels per step).\n", ilo, ihi, w - 1, w
            printf "- `ports`: %.3f us per us at the low end, %.3f at the high end.\n", lo, hi
            if (hi - lo > 0.5) {
                for (i = 1; i < n; i++) { sl = (s[i + 1] - s[i]) / (x[i + 1] - x[i]); if (!a && sl > lo + 0.01) a = i; if (!b && sl > hi - 0.01) b = i }
                xc = (s[n] - hi * x[n] - s[1] + lo * x[1]) / (lo - hi)
                printf "- The slope first rises above its low-end value between X = %s and %s us and reaches its high-end value between %s and %s us;", x[a], x[a + 1], x[b], x[b + 1]
                printf " the two straight ends cross at X = %.1f us, against the predicted %.1f us (%+.1f us).", xc, pred, xc - pred
                if (x[a] < predlo) printf " The first rise comes below the lowest window X* (%.1f us): receivers whose last flag comes early.", predlo
                printf "\n"
            } else print "- The slope does not change over the swept range: no crossover there."
        }' fine="$tmp/attention-fine.csv" "$tmp/attention-sweep.csv" "$tmp/attention-fine.csv"
cat <<'EOF'

**The answer.** With TBO the attention of one micro-batch is not in series with the
network: every ATTN1 but the first runs inside the other micro-batch's combine flight. On
`ports` that flight is long, because the heaviest rank's NIC must send its combine rows to
every off-node rank at one NIC's bandwidth; while it outlasts ATTN1, a longer ATTN1 only
shortens the spin of the RECV-C that follows (the combine wait) and the step grows by the
first ATTN1 alone. Once ATTN1 outlasts the flight, each window exposes it and the step
grows as on `ideal`. On `ideal` a flow is alone on its path, so the combine flight is one
flow's latency and transfer and every ATTN1 is exposed from the start. The crossover is per
window, between one ATTN1 and one combine flight, not between a layer's total compute and
its total network time: the dispatch flights, the MLPs and the SEND and RECV kernels are
in series at every X. The step on `ports` is above `ideal` by the contention; the gap
narrows as attention grows and stops narrowing once every window exposes its ATTN1.

EOF
    awk -F, '
        $2 == "ports" { if (first == "") { first = $1; d0 = $4 }; last = $1; d1 = $4 }
        END {
            if (d0 > 0 && d1 > 0)
                printf "On `ports` the dispatch flight also outlasts SHARED + ATTN0: a rank spends %.3f us of its step waiting in dispatch at X = %s and %.3f us at X = %s.\n", d0, first, d1, last
        }' "$tmp/shipped.csv"
}

{
cat <<'EOF'
# Worked answers

Generated by `scripts/answers.sh` from the shipped scenarios; do not edit by hand (the test
suite checks that the script reproduces this page and its pictures byte for byte). Every
number below is the tool's own output. The model behind them is in [model.md](model.md).

The two-rank thought experiments put both ranks on one node with the `ideal` network (every
flow alone on NVLink), fixed kernel durations (ATTN0 30 us, ATTN1 60 us, SHARED 15 us, GEMM
50 us), 16 experts, top-8: rank 0's tokens go to both ranks' experts alike.

## 1. Must all ranks synchronize before or after dispatch and combine?

No. A dispatch RECV waits for the count message of every (source rank, expert) pair, and a
combine RECV for the flag of every expert, sent even when no token went that way: the
arrival of data is the synchronization. `Scenarios/batch-imbalance-barriers.yaml` adds
explicit barriers (every rank signals every rank and waits for all) before and after
dispatch and combine. Compared with no barriers:

EOF
show compare Scenarios/batch-imbalance.yaml Scenarios/batch-imbalance-barriers.yaml
cat <<'EOF'

The step is not faster, and the light rank (the mean and the minimum) finishes later: a
barrier makes every rank wait for the slowest one at each point, which the data
dependencies did not require. In the model no rank can finish earlier with a barrier (a
property test checks it on random scenarios): every kernel starts at a maximum of times
that a barrier can only push later.

## 2. Batch imbalance, equal attention: is the step attention + max(dispatch) + GEMM + max(combine)?

Rank 0 holds 128 tokens, rank 1 holds 32; attention takes the same time on both.

EOF
show run Scenarios/batch-imbalance.yaml --no-store
cat <<'EOF'

Yes, per rank and for the step. Every rank's dispatch RECV ends with the heaviest sender's
arrival (the light rank 1 waits longer inside its dispatch); then each rank ends with its
*own* combine arrival: the heavy rank 0, whose 128 tokens come back, ends at
attention + max(dispatch) + GEMM + max(combine), which is the step latency; the light rank
ends earlier, at attention + max(dispatch) + GEMM + its own combine. The critical path and
who waited for whom:

EOF
show explain Scenarios/batch-imbalance.yaml
"$epsim" plot Scenarios/batch-imbalance.yaml --svg "$out/img/batch-imbalance.svg" --title "batch imbalance (128 vs 32 tokens), no overlap" >/dev/null
cat <<'EOF'

![batch imbalance timeline](img/batch-imbalance.svg)

## 3. Attention imbalance, equal batches: is the step max(attention) + dispatch + GEMM + combine?

Rank 1's core attention (a longer KV cache) takes 120 us instead of 60.

EOF
show run Scenarios/attention-imbalance.yaml --no-store
echo
show compare Scenarios/balanced.yaml Scenarios/attention-imbalance.yaml
cat <<'EOF'

Yes: both ranks end together, exactly the attention difference (60 us) after the balanced
case. The fast rank's extra time is not idle: it is wait inside its dispatch RECV, blamed
on rank 1, which started late:

EOF
show explain Scenarios/attention-imbalance.yaml
"$epsim" plot Scenarios/attention-imbalance.yaml --svg "$out/img/attention-imbalance.svg" --title "attention imbalance (rank 1 twice as slow), no overlap" >/dev/null
cat <<'EOF'

![attention imbalance timeline](img/attention-imbalance.svg)

## 4. Why does a profiler show no blank gaps?

Because the waiting happens inside a kernel. A RECV kernel (or the RECV half of the fused
DISPATCH and COMBINE) is launched as soon as its stream reaches it and stays resident,
spinning on its count or flag slots, until the last one lands; only then does it copy or
reduce. In the timelines above the hatched part of each dispatch and combine kernel is
that spinning: the stream is busy, so the profiler draws a kernel, not a gap. On rank 0 of
the attention-imbalance picture, the 60 us it waits for rank 1 sit inside its DISPATCH.

## 5. With two micro-batches, do these effects remain, get worse, or get better?

`Scenarios/tbo-imbalance-ep16.yaml`: 16 ranks on 2 nodes, DeepSeek-V3 sizes, 4 MoE layers,
contended NICs. Without overlap (`none`) and with DeepSeek's decode overlap
(`deepseek-decode`), first as rank 0 holds more tokens than the others (128 each):

EOF
sweep_csv Scenarios/tbo-imbalance-ep16.yaml --vary 'workload.tokens_per_rank[0]=128,192,256,384,512' --vary schedule=none,deepseek-decode > "$tmp/batch.csv"
effects "$tmp/batch.csv" "rank 0's tokens"
"$epsim" plot --csv "$tmp/batch.csv" --x 'workload.tokens_per_rank[0]' --y step_latency_us --series schedule --svg "$out/img/tbo-batch-imbalance.svg" --title "step latency as rank 0's batch grows (others 128)" >/dev/null
cat <<'EOF'

![TBO under batch imbalance](img/tbo-batch-imbalance.svg)

then as rank 0's core attention grows (others 60 us):

EOF
sweep_csv Scenarios/tbo-imbalance-ep16.yaml --vary 'costs.attn1_us[0]=60,90,120,180,240' --vary schedule=none,deepseek-decode > "$tmp/attention.csv"
effects "$tmp/attention.csv" "rank 0's ATTN1 (us)"
"$epsim" plot --csv "$tmp/attention.csv" --x 'costs.attn1_us[0]' --y step_latency_us --series schedule --svg "$out/img/tbo-attention-imbalance.svg" --title "step latency as rank 0's attention grows (others 60 us)" >/dev/null
cat <<'EOF'

![TBO under attention imbalance](img/tbo-attention-imbalance.svg)

and, balanced, as every rank's batch grows:

EOF
sweep_csv Scenarios/tbo-imbalance-ep16.yaml --vary 'workload.tokens_per_rank=32,64,128,256' --vary schedule=none,deepseek-decode > "$tmp/tokens.csv"
effects "$tmp/tokens.csv" "tokens per rank"
"$epsim" plot --csv "$tmp/tokens.csv" --x 'workload.tokens_per_rank' --y step_latency_us --series schedule --svg "$out/img/tbo-tokens.svg" --title "step latency against tokens per rank (balanced)" >/dev/null
cat <<'EOF'

![TBO against tokens per rank](img/tbo-tokens.svg)

How to read them. `TBO saves` is the step latency without overlap minus with it;
`vs first point` is how much longer the step is than at the first point, without and with
overlap: in the first two tables, what the imbalance costs. Where both imbalance columns grow, the effect remains under TBO: the coupling
through arrivals is the same, every rank still waits for the heaviest sender and for the
slowest attention. Where the cost with TBO is the smaller one, overlap hides part of the
imbalance (the slow rank's extra work overlaps the other micro-batch's communication);
where it is not, the imbalance lands on what overlap cannot hide (the heavy rank's larger
dispatch and combine are bytes on its own NIC). The last table shows where overlap pays at
all: with few tokens per rank the transfers are short and the second micro-batch's extra
kernels cost more than they hide.

## 6. How does a rank know how many tokens it will receive, without an all-reduce?

From the count messages. Every sender posts, after its data and on the same queue pair, one
count per (destination rank, destination expert), also when that count is zero; the
receiver's RECV spins until all of them are in and then knows each expert's token count
(DeepEP's `masked_m`). No collective is needed, but every rank hears from every rank, so a
rank with nothing to send still gates everyone. In `Scenarios/zero-token-rank.yaml` rank 2
holds no tokens and has a slow attention:

EOF
show explain Scenarios/zero-token-rank.yaml
cat <<'EOF'

Rank 2 sends no data at all, yet every other rank's dispatch waits for its counts: it is
the culprit.
EOF
attention_section
precision_section
mtp_section
host_section
capacity_section
sbo_section
serving_section
} > "$page"
echo "wrote $page" >&2
