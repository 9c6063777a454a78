import Foundation
import Synchronization

/// A fitted time model of one production kernel family, in the reference hardware's units:
///
/// ```
/// time = fixed + max(mem, math) + overlap x min(mem, math)
/// mem  = bytes / stream rate      (scaled by HBM bandwidth in a what-if)
/// math = FLOPs / FLOP rate        (scaled by the peak of the kernel's precision)
/// ```
///
/// `overlap` 0 is a pure roofline (memory and math hide each other entirely), 1 adds them.
/// A GEMM family also pays ``kBlockMicros`` per 128-wide block of its reduction dimension `k`:
/// each output tile walks its k blocks in order, so a GEMM that fits in one wave of tiles has
/// a latency that grows with `k` whatever its bytes (DeepGEMM's shared expert down projection,
/// k 2048, takes 9.6 µs; o_proj, k 16384, 51 µs at the same few rows).
/// All zero: no fit (the family falls back to the generic roofline).
public struct KernelFit: Sendable, Equatable {
    /// Launch, prologue and tail, µs: not scaled by a what-if (it is neither bytes nor FLOPs).
    public var fixedMicros = 0.0
    /// Bytes per second the kernel streams at, GB/s, on the reference hardware.
    public var streamGBps = 0.0
    /// FLOP/s it computes at, TFLOP/s, on the reference hardware.
    public var tflops = 0.0
    /// The share of the shorter of the two terms that is not hidden behind the longer.
    public var overlap = 0.0
    /// µs per 128-wide block of `k` (GEMM families; a latency, not scaled by a what-if).
    public var kBlockMicros = 0.0

    public init(fixedMicros: Double = 0, streamGBps: Double = 0, tflops: Double = 0, overlap: Double = 0, kBlockMicros: Double = 0) {
        self.fixedMicros = fixedMicros
        self.streamGBps = streamGBps
        self.tflops = tflops
        self.overlap = overlap
        self.kBlockMicros = kBlockMicros
    }

    /// Whether the family has a fit (a positive stream rate).
    public var isFitted: Bool { streamGBps > 0 }

    /// The two scaled terms, µs: bytes at `streamGBps x memoryScale`, FLOPs at `tflops x
    /// mathScale`.
    public func terms(flops: Double, bytes: Double, memoryScale: Double = 1, mathScale: Double = 1) -> (memory: Double, math: Double) {
        let mem = bytes / (streamGBps * memoryScale * 1e3)
        let math = tflops > 0 ? flops / (tflops * mathScale * 1e6) : 0
        return (mem, math)
    }

    /// `fixed + ceil(k / 128) x kBlock + max(mem, math) + overlap x min(mem, math)`, µs
    /// (`k` 0: no reduction-dimension term).
    public func micros(flops: Double, bytes: Double, k: Int = 0, memoryScale: Double = 1, mathScale: Double = 1) -> Double {
        let (mem, math) = terms(flops: flops, bytes: bytes, memoryScale: memoryScale, mathScale: mathScale)
        return fixedMicros + Double((k + 127) / 128) * kBlockMicros + max(mem, math) + overlap * min(mem, math)
    }
}

/// The production compute kernels of a DeepSeek-style MLA decode layer, measured on one GPU
/// (`calibration/kernels/`, `epsim calibrate --kernels`), as fitted models. Where a
/// ``Hardware`` carries them (`reference.hbmGBps > 0`), they replace the generic roofline for:
///
/// - `MLP`: DeepGEMM's masked grouped FP8 GEMM twice (gate-up, down) with the SiLU-and-mul
///   FP8 quantisation between them (``expertGEMM``, ``activation``);
/// - `SHARED` and `DENSE`: the same three steps as dense FP8 GEMMs (``projection``);
/// - decode `ATTN0` (MLA): the q_a/kv_a and q_b projections (``projection``) and the absorbed
///   per-head W_UK product (``absorbedBMM``);
/// - decode `ATTN1` (MLA): FlashMLA's dense decode (``attentionCore``), the absorbed W_UV
///   product, o_proj and the routing gate (``projection``).
///
/// Prefill and GQA attention keep the roofline (nothing of theirs is measured).
///
/// **What-ifs.** Each fit is in the reference hardware's terms. On a `Hardware` whose HBM
/// bandwidth or peak FLOP/s differ from the reference, the memory terms scale by
/// `hbm_gbps / reference hbm`, the math terms by the ratio of the kernel precision's peak
/// (FP8 for the GEMMs, BF16 for core attention and the absorbed products), and the fixed
/// parts stay: ``scales(for:)``, and ``extrapolationNote(for:)`` says so in `run` and
/// `validate`.
public struct MeasuredCompute: Sendable, Equatable {
    /// DeepGEMM `m_grouped_fp8_gemm_nt_masked`, per call (one of the two GEMMs of the
    /// routed-expert FFN): bytes are the active experts' FP8 weights (plus their re-reads,
    /// below), FLOPs count every expert's rows padded to the tile DeepGEMM picks
    /// (``DeepGEMMTiling``).
    public var expertGEMM = KernelFit()
    /// The share of an expert's weights read again from HBM for each further row tile
    /// (the rest comes from L2): bytes = active x n x k + reread x (row tiles - active) x n x k.
    public var expertGEMMReread = 0.0
    /// SiLU-and-mul with per-token 128-channel FP8 quantisation between the two GEMMs:
    /// `fixed + max(bytes / stream, rows of the busiest expert x activationRowMicros)`
    /// (its programs loop over one expert's rows; ``KernelFit/tflops`` unused).
    public var activation = KernelFit()
    /// µs per row of the expert with the most rows (a latency, not scaled by a what-if).
    public var activationRowMicros = 0.0
    /// DeepGEMM `fp8_gemm_nt` (dense FP8 GEMM with 128-block scales), per call.
    public var projection = KernelFit()
    /// The absorbed MLA products (`torch.bmm`, BF16, one batch entry per head), per call.
    public var absorbedBMM = KernelFit()
    /// FlashMLA dense decode (BF16 KV cache, MQA mode) with its split-KV combine:
    /// ``KernelFit`` over KV-cache bytes and FLOPs, plus ``attentionRequestMicros`` per
    /// request and query token.
    public var attentionCore = KernelFit()
    public var attentionRequestMicros = 0.0
    /// The GPU the kernels were measured on (0: no measured models).
    public var reference = Reference()
    /// Where the measurement is stored (`calibration/measurements/...`), for notes; no
    /// spaces (it is part of a scenario's canonical form).
    public var source = ""

    /// The measuring GPU's nominal figures, against which a what-if scales.
    public struct Reference: Sendable, Equatable {
        public var name = ""
        public var hbmGBps = 0.0
        public var peakFP8TFLOPS = 0.0
        public var peakBF16TFLOPS = 0.0
    }

    public init() {}

    /// Whether any measured model is present.
    public var isPresent: Bool { reference.hbmGBps > 0 }

    /// Factors a what-if applies: HBM bandwidth, FP8 peak and BF16 peak of `hardware` over the
    /// reference's (1 on the reference GPU).
    public func scales(for hardware: Hardware) -> (memory: Double, fp8: Double, bf16: Double) {
        guard isPresent else { return (1, 1, 1) }
        return (
            hardware.hbmGBps / reference.hbmGBps, hardware.peakFP8TFLOPS / reference.peakFP8TFLOPS,
            hardware.peakBF16TFLOPS / reference.peakBF16TFLOPS
        )
    }

    /// A line for `run` and `validate` when `hardware` is not the GPU these kernels were
    /// measured on: which figures differ and by what factor the models were scaled. nil on the
    /// reference GPU or without measured models.
    public func extrapolationNote(for hardware: Hardware) -> String? {
        guard isPresent else { return nil }
        var parts: [String] = []
        func figure(_ key: String, _ value: Double, _ ref: Double, _ what: String) {
            guard abs(value / ref - 1) > 1e-9 else { return }
            parts.append(
                "\(key) \(String(format: "%g", value)) against \(String(format: "%g", ref)) measured: \(what) x\(String(format: "%.3g", value / ref)) (their times x\(String(format: "%.3g", ref / value)))")
        }
        figure("hbm_gbps", hardware.hbmGBps, reference.hbmGBps, "memory-bound rates")
        figure("peak_fp8_tflops", hardware.peakFP8TFLOPS, reference.peakFP8TFLOPS, "FP8 GEMMs' FLOP rates")
        figure("peak_bf16_tflops", hardware.peakBF16TFLOPS, reference.peakBF16TFLOPS, "core attention's and the absorbed products' FLOP rates")
        guard !parts.isEmpty else { return nil }
        return "compute kernels (DeepGEMM, FlashMLA) measured on \(reference.name) (\(source)) and extrapolated to \(hardware.name): "
            + parts.joined(separator: "; ") + "; fixed parts kept"
    }
}

/// The row and column tiles DeepGEMM (commit 54e2261) picks for an SM90 FP8 1D2D GEMM:
/// a port of `csrc/jit_kernels/heuristics/sm90.hpp` (`get_layout_candidates`,
/// `get_pipeline_config`, `get_layout_info`): block_m 64 or 128 (also 16, 32 and 256 for a
/// normal GEMM), block_n 16...192 in steps of 16, clusters of 1 or 2, shared memory for at
/// least 3-4 stages, and the candidate with the fewest estimated cycles (L1/L2 bytes over
/// their per-cycle rates, divided by wave efficiency). The tiling depends on the *expected*
/// rows per expert (`expected_m`), so rows past it cost whole tiles.
public enum DeepGEMMTiling {
    static let sharedMemory = 232_448

    struct Key: Hashable {
        let m: Int, n: Int, k: Int, groups: Int, sms: Int, masked: Bool
    }
    /// Choices already made: a step asks the same few shapes for every rank and layer, and the
    /// search costs ~100 candidates (0.4 s of a 0.65 s EP 64 decode step without it).
    static let memo = Mutex<[Key: (Int, Int)]>([:])

    /// `(blockM, blockN)` for a GEMM of `expectedM` rows per group, `n` x `k` FP8 weights and
    /// `groups` groups on `sms` SMs; `masked` for the masked grouped layout.
    public static func choose(expectedM: Int, n: Int, k: Int, groups: Int, sms: Int = 132, masked: Bool) -> (blockM: Int, blockN: Int) {
        let key = Key(m: max(1, expectedM), n: n, k: k, groups: groups, sms: sms, masked: masked)
        if let hit = memo.withLock({ $0[key] }) { return hit }
        let choice = search(key)
        memo.withLock {
            if $0.count >= 100_000 { $0.removeAll() }  // bounded: shapes x expected rows in one process
            $0[key] = choice
        }
        return choice
    }

    static func search(_ key: Key) -> (blockM: Int, blockN: Int) {
        let (m, n, k, groups, sms, masked) = (key.m, key.n, key.k, key.groups, key.sms, key.masked)
        var blockMs = [64, 128]
        if !masked {
            if m <= 16 { blockMs.append(16) }
            if m <= 32 { blockMs.append(32) }
            blockMs.append(256)
        }
        let blockK = 128
        var best: (cycles: Int64, blockM: Int, blockN: Int)?
        for clusterM in 1...2 {
            for clusterN in 1...2 where clusterM * clusterN <= 2 && sms % (clusterM * clusterN) == 0 {
                for blockM in blockMs {
                    for blockN in stride(from: 16, through: 192, by: 16) {
                        if blockN > blockK && blockN % (blockN - blockK) != 0 && blockK % (blockN - blockK) != 0 { continue }
                        if masked && ceilDiv(n, blockN) % (clusterM * clusterN) != 0 { continue }
                        if blockM > 128 && blockN > 128 { continue }
                        let stages = self.stages(blockM: blockM, blockN: blockN, k: k)
                        if stages < 3 || (blockM * blockN < 128 * 192 && stages < 4) { continue }
                        let blocks = Int64(ceilDiv(m, blockM) * ceilDiv(n, blockN) * groups)
                        let waves = (blocks + Int64(sms) - 1) / Int64(sms)
                        let l2PerCycle = Int64(min(64.0 * Double(sms), 8e6 / 1.3e3))
                        let l1PerCycle = Int64(128 * sms)
                        let kk = Int64(k)
                        let l2AB = kk * Int64(blockM / clusterN + blockN / clusterM)
                        let l1AB = kk * Int64(blockM + blockN)
                        let l1TC = kk * Int64(max(64, blockM) + blockN) + Int64(blockM * blockN * 2)
                        let cd = Int64(blockM * blockN * 2)
                        let l2 = (l2AB + cd) * blocks / l2PerCycle
                        let l1 = (l1AB + l1TC + cd) * blocks / l1PerCycle
                        let efficiency = Double(blocks) / Double(waves * Int64(sms))
                        var cycles = Int64(Double(max(l1, l2)) / efficiency)
                        if clusterM * clusterN > 1 && waves <= 1 { cycles = .max }
                        if best == nil || cycles < best!.cycles { best = (cycles, blockM, blockN) }
                    }
                }
            }
        }
        return best.map { ($0.blockM, $0.blockN) } ?? (64, 128)
    }

    /// Pipeline stages that fit in shared memory (`get_pipeline_config`, BF16 output).
    static func stages(blockM: Int, blockN: Int, k: Int) -> Int {
        let blockK = 128
        let cd = align(blockM * blockN * 2, 1024)
        let barriers = 16 * 8 * 2
        let perStage = blockM * blockK + blockN * blockK + align(blockM * 4, 128)
        let uniformSFB = blockK % blockN == 0 ? 1 : 2
        let extraSFB = align(ceilDiv(k, blockK) * 4 * uniformSFB, 8)
        return min((sharedMemory - cd - barriers - extraSFB) / perStage, 16)
    }

    static func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
    static func align(_ a: Int, _ b: Int) -> Int { ceilDiv(a, b) * b }
}

extension MeasuredCompute {
    /// One masked grouped GEMM call over `rows` (each local expert's received rows), `n` x `k`
    /// FP8 weights, µs on `hardware`. `expectedM`: the rows per expert the caller tiles for
    /// (nil: the mean of `rows`, rounded up).
    public func expertGEMMMicros(rows: [Int], n: Int, k: Int, expectedM: Int? = nil, on hardware: Hardware) -> Double {
        let active = rows.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }  // no array: this runs per kernel
        guard active > 0 else { return expertGEMM.fixedMicros + Double((k + 127) / 128) * expertGEMM.kBlockMicros }
        let total = rows.reduce(0, +)
        let expected = expectedM ?? max(1, (total + rows.count - 1) / rows.count)
        let tile = DeepGEMMTiling.choose(expectedM: expected, n: n, k: k, groups: rows.count, sms: hardware.sms, masked: true)
        let tiles = rows.reduce(0) { $0 + DeepGEMMTiling.ceilDiv($1, tile.blockM) }
        let weights = Double(n) * Double(k)
        let bytes = weights * (Double(active) + expertGEMMReread * Double(tiles - active))
        let flops = 2 * Double(tiles * tile.blockM) * weights
        let s = scales(for: hardware)
        return expertGEMM.micros(flops: flops, bytes: bytes, k: k, memoryScale: s.memory, mathScale: s.fp8)
    }

    /// SiLU-and-mul with FP8 quantisation over `rows` (per expert) of an FFN with
    /// intermediate size `intermediate`, µs: reads `2 I` BF16 values and writes `I` FP8
    /// values and `I / 128` scales per row.
    public func activationMicros(rows: [Int], intermediate: Int, on hardware: Hardware) -> Double {
        let total = Double(rows.reduce(0, +))
        let bytes = total * Double(intermediate * 4 + intermediate + intermediate / 128 * 4)
        let s = scales(for: hardware)
        return activation.fixedMicros
            + max(bytes / (activation.streamGBps * s.memory * 1e3), Double(rows.max() ?? 0) * activationRowMicros)
    }

    /// One dense FP8 GEMM call (`tokens` x `k` activations, `n` x `k` weights of
    /// `weightBytes` each), µs: FLOPs over rows padded to DeepGEMM's row tile.
    public func projectionMicros(tokens: Int, n: Int, k: Int, weightBytes: Double = 1, on hardware: Hardware) -> Double {
        guard tokens > 0 else { return 0 }
        let tile = DeepGEMMTiling.choose(expectedM: tokens, n: n, k: k, groups: 1, sms: hardware.sms, masked: false)
        let rows = DeepGEMMTiling.ceilDiv(tokens, tile.blockM) * tile.blockM
        let s = scales(for: hardware)
        // A BF16-weight GEMM (the gate) also computes at BF16's peak.
        let mathScale = weightBytes > 1 ? s.bf16 * (reference.peakBF16TFLOPS / reference.peakFP8TFLOPS) : s.fp8
        return projection.micros(
            flops: 2 * Double(rows) * Double(n) * Double(k), bytes: Double(n) * Double(k) * weightBytes, k: k,
            memoryScale: s.memory, mathScale: mathScale)
    }

    /// One absorbed per-head product (`heads` x (`tokens` x `k`) x (`k` x `n`), BF16), µs.
    public func absorbedMicros(heads: Int, tokens: Int, n: Int, k: Int, on hardware: Hardware) -> Double {
        guard tokens > 0 else { return 0 }
        let s = scales(for: hardware)
        let h = Double(heads)
        return absorbedBMM.micros(
            flops: 2 * h * Double(tokens) * Double(n) * Double(k), bytes: 2 * h * Double(n) * Double(k),
            memoryScale: s.memory, mathScale: s.bf16)
    }

    /// FlashMLA dense decode over `requests` requests of `queryTokens` query tokens each
    /// (`s_q`), reading `kvTokens` cached tokens in all, µs: bytes are the KV cache (`dQK`
    /// values of `kvBytes` each per token), FLOPs `2 heads s_q kv (dQK + dV)`.
    /// `fp8Math`: core attention in FP8 (`model.attention_dtype: fp8`), which was not
    /// measured: its math term is scaled by the FP8 / BF16 peak ratio, an extrapolation.
    public func attentionCoreMicros(
        requests: Int, queryTokens: Int, kvTokens: Double, heads: Int, dQK: Int, dV: Int, kvBytes: Double, fp8Math: Bool = false,
        on hardware: Hardware
    ) -> Double {
        guard requests > 0 else { return 0 }
        var s = scales(for: hardware)
        if fp8Math { s.bf16 = hardware.peakFP8TFLOPS / reference.peakBF16TFLOPS }
        let q = Double(queryTokens)
        let flops = 2 * Double(heads) * q * kvTokens * Double(dQK + dV)
        let bytes = kvTokens * Double(dQK) * kvBytes
        return attentionCore.micros(flops: flops, bytes: bytes, memoryScale: s.memory, mathScale: s.bf16)
            + attentionRequestMicros * Double(requests) * q
    }
}

extension MeasuredCompute {
    /// The production kernels measured on one H100 SXM (80 GB HBM3, driver 580.159.04, CUDA
    /// 13.0, PyTorch 2.11; DeepGEMM 54e2261, FlashMLA 9241ae3): `epsim calibrate --kernels
    /// calibration/measurements/2026-12-07-h100-kernels-a/{expert-gemm,proj-gemm,flash-mla}.csv
    /// calibration/measurements/2026-12-07-h100-kernels-c/act-quant.csv --fit --preset h100`.
    /// Held-out errors per family in `docs/validation.md` ("Production compute kernels"); a
    /// test refits and checks every value.
    public static let hopperH100: MeasuredCompute = {
        var m = MeasuredCompute()
        m.expertGEMM = KernelFit(fixedMicros: 4.49, streamGBps: 2920, tflops: 1540, overlap: 0.382, kBlockMicros: 0.0264)
        m.expertGEMMReread = 0.0447
        m.activation = KernelFit(fixedMicros: 1.91, streamGBps: 1330)
        m.activationRowMicros = 0.085
        m.projection = KernelFit(fixedMicros: 5, streamGBps: 2690, tflops: 1540, overlap: 0.289, kBlockMicros: 0.0169)
        m.absorbedBMM = KernelFit(fixedMicros: 4, streamGBps: 2680, tflops: 284, overlap: 0.694)
        m.attentionCore = KernelFit(fixedMicros: 20.3, streamGBps: 5980, tflops: 855, overlap: 0.645)
        m.attentionRequestMicros = 0.0492
        m.reference = Reference(name: "h100", hbmGBps: 3350, peakFP8TFLOPS: 1979, peakBF16TFLOPS: 989)
        m.source = "calibration/measurements/2026-12-07-h100-kernels-{a,c}"
        return m
    }()
}

extension Scenario {
    /// The `note:` `run` and `validate` print about the measured production kernels: what of
    /// them this scenario extrapolates (another GPU's HBM or peaks, FP8 core attention or an
    /// FP8 KV cache on FlashMLA's BF16 fit); nil when no kernel of the scenario is priced by a
    /// measured model or nothing is extrapolated.
    public var measuredKernelNote: String? {
        let hw = costs.hardware
        let m = hw.measured
        guard m.isPresent else { return nil }
        func roofline(_ c: ComputeCost) -> Bool { if case .roofline = c { return true } else { return false } }
        let a = model.architecture
        var mla = false
        if case .mla = a.attention { mla = true }
        let attentionMeasured =
            workload.phase == .decode && mla && a.weightBytes == 1 && (roofline(costs.attn0) || roofline(costs.attn1))
            && m.projection.isFitted && m.absorbedBMM.isFitted && m.attentionCore.isFitted
        let ffnMeasured =
            a.weightBytes == 1
            && ((roofline(costs.gemm) && m.expertGEMM.isFitted && hw.expertFFNStreamGBps == 0)
                || ((roofline(costs.shared) || roofline(costs.denseMLP)) && m.projection.isFitted))
        guard attentionMeasured || ffnMeasured else { return nil }
        var parts: [String] = []
        if let hardware = m.extrapolationNote(for: hw) { parts.append(hardware) }
        if attentionMeasured {
            var what: [String] = []
            if a.attentionPrecision == .fp8 { what.append("FP8 core attention (math scaled by the FP8 / BF16 peak ratio)") }
            if a.kvBytes != 2 { what.append("a \(String(format: "%g", a.kvBytes))-byte KV cache (bytes scaled by its width)") }
            if !what.isEmpty {
                parts.append("FlashMLA was measured with BF16 math and a BF16 KV cache: " + what.joined(separator: " and ") + " extrapolated")
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }
}
