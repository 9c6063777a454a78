/// One numeric field of ``Hardware`` as a scenario names it under `hardware:` (and a sweep
/// or a calibration overrides it: `hardware.<key>`). The one mapping between YAML keys and
/// preset fields: the scenario decoder reads through it, the fits search through it, and a
/// fit's result is applied through it as key-path overrides.
public struct HardwareParameter: @unchecked Sendable {
    /// The key under `hardware:` (units in the name: `_us`, `_gbps`, `_tflops`).
    public let key: String
    public let field: WritableKeyPath<Hardware, Double>
    /// The values a scenario may give.
    public let range: ClosedRange<Double>
    /// `infinite` is allowed (a bandwidth with no limit).
    public let allowsInfinite: Bool

    /// What a value of this key is, for an error message (from the unit in its name).
    var what: String {
        if key.hasSuffix("_mps") { return "a message rate in millions per second" }
        if key.hasSuffix("_gbps") { return "a bandwidth in GB/s" }
        if key.hasSuffix("_us") { return "a duration in microseconds" }
        return "a number"
    }

    /// The override key path (`hardware.<key>`), as `epsim sweep --vary` takes it.
    public var keyPath: String { "hardware.\(key)" }

    /// The override that sets this field to its value in `hardware`.
    public func override(from hardware: Hardware) -> Override {
        let v = hardware[keyPath: field]
        return Override(keyPath: keyPath, value: v.isFinite ? String(format: "%g", v) : "infinite")
    }
}

extension Hardware {
    /// Every numeric field a scenario can set under `hardware:` (besides `preset` and `sms`).
    public static let parameters: [HardwareParameter] = [
        .init(key: "peak_bf16_tflops", field: \.peakBF16TFLOPS, range: 1e-3...1e6, allowsInfinite: false),
        .init(key: "peak_fp8_tflops", field: \.peakFP8TFLOPS, range: 1e-3...1e6, allowsInfinite: false),
        .init(key: "hbm_gbps", field: \.hbmGBps, range: 1e-3...1e7, allowsInfinite: false),
        .init(key: "nvlink_gbps", field: \.nvlinkGBps, range: 1e-3...1e7, allowsInfinite: false),
        .init(key: "nvlink_latency_us", field: \.nvlinkLatencyMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "rdma_gbps", field: \.rdmaGBps, range: 1e-3...1e7, allowsInfinite: false),
        .init(key: "rdma_latency_us", field: \.rdmaLatencyMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "compute_efficiency", field: \.computeEfficiency, range: 1e-3...1, allowsInfinite: false),
        .init(key: "memory_efficiency", field: \.memoryEfficiency, range: 1e-3...1, allowsInfinite: false),
        .init(key: "kernel_overhead_us", field: \.kernelOverheadMicros, range: 0...1e6, allowsInfinite: false),
        // The DeepEP kernel costs: what `epsim calibrate --fit` prints for a cluster.
        .init(key: "dispatch_send_fixed_us", field: \.dispatchSendFixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "dispatch_send_per_message_us", field: \.dispatchSendPerMessageMicros, range: 0...1e3, allowsInfinite: false),
        .init(key: "dispatch_recv_fixed_us", field: \.dispatchRecvFixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "dispatch_recv_copy_gbps", field: \.dispatchRecvCopyGBps, range: 1e-3...1e7, allowsInfinite: false),
        .init(key: "combine_send_fixed_us", field: \.combineSendFixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "combine_send_per_message_us", field: \.combineSendPerMessageMicros, range: 0...1e3, allowsInfinite: false),
        .init(key: "combine_recv_fixed_us", field: \.combineRecvFixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "combine_recv_reduce_gbps", field: \.combineRecvReduceGBps, range: 1e-3...1e7, allowsInfinite: false),
        // As their twins under network: and costs: (`infinite` allowed; a duration's range).
        .init(key: "self_copy_gbps", field: \.selfCopyGBps, range: 1e-6...1e12, allowsInfinite: true),
        .init(key: "launch_gap_us", field: \.launchGapMicros, range: 0...ScenarioLimits.maxMicros, allowsInfinite: false),
        .init(key: "expert_ffn_fixed_us", field: \.expertFFNFixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "expert_ffn_stream_gbps", field: \.expertFFNStreamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "expert_ffn_tflops", field: \.expertFFNTFLOPS, range: 1e-3...1e6, allowsInfinite: false),
        .init(key: "dispatch_recv_pair_gbps", field: \.dispatchRecvPairGBps, range: 1e-6...1e12, allowsInfinite: true),
        .init(key: "combine_send_pair_gbps", field: \.combineSendPairGBps, range: 1e-6...1e12, allowsInfinite: true),
        // As their twins network.nvlink.ingress_gbps and network.rdma.message_rate_mps.
        .init(key: "nvlink_ingress_gbps", field: \.nvlinkIngressGBps, range: 1e-3...1e7, allowsInfinite: true),
        .init(key: "nic_message_rate_mps", field: \.nicMessageRateMps, range: 1e-6...1e9, allowsInfinite: true),
        // The measured production kernels (MeasuredCompute; `epsim calibrate --kernels --fit`).
        .init(key: "expert_gemm_fixed_us", field: \.measured.expertGEMM.fixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "expert_gemm_stream_gbps", field: \.measured.expertGEMM.streamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "expert_gemm_tflops", field: \.measured.expertGEMM.tflops, range: 0...1e6, allowsInfinite: false),
        .init(key: "expert_gemm_overlap", field: \.measured.expertGEMM.overlap, range: 0...1, allowsInfinite: false),
        .init(key: "expert_gemm_reread", field: \.measured.expertGEMMReread, range: 0...1, allowsInfinite: false),
        .init(key: "expert_gemm_k_block_us", field: \.measured.expertGEMM.kBlockMicros, range: 0...1e3, allowsInfinite: false),
        .init(key: "activation_fixed_us", field: \.measured.activation.fixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "activation_stream_gbps", field: \.measured.activation.streamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "activation_row_us", field: \.measured.activationRowMicros, range: 0...1e3, allowsInfinite: false),
        .init(key: "projection_fixed_us", field: \.measured.projection.fixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "projection_stream_gbps", field: \.measured.projection.streamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "projection_tflops", field: \.measured.projection.tflops, range: 0...1e6, allowsInfinite: false),
        .init(key: "projection_overlap", field: \.measured.projection.overlap, range: 0...1, allowsInfinite: false),
        .init(key: "projection_k_block_us", field: \.measured.projection.kBlockMicros, range: 0...1e3, allowsInfinite: false),
        .init(key: "absorbed_bmm_fixed_us", field: \.measured.absorbedBMM.fixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "absorbed_bmm_stream_gbps", field: \.measured.absorbedBMM.streamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "absorbed_bmm_tflops", field: \.measured.absorbedBMM.tflops, range: 0...1e6, allowsInfinite: false),
        .init(key: "absorbed_bmm_overlap", field: \.measured.absorbedBMM.overlap, range: 0...1, allowsInfinite: false),
        .init(key: "attention_core_fixed_us", field: \.measured.attentionCore.fixedMicros, range: 0...1e6, allowsInfinite: false),
        .init(key: "attention_core_stream_gbps", field: \.measured.attentionCore.streamGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "attention_core_tflops", field: \.measured.attentionCore.tflops, range: 0...1e6, allowsInfinite: false),
        .init(key: "attention_core_overlap", field: \.measured.attentionCore.overlap, range: 0...1, allowsInfinite: false),
        .init(key: "attention_core_request_us", field: \.measured.attentionRequestMicros, range: 0...1e3, allowsInfinite: false),
        // The GPU those fits were measured on (what a what-if scales against; 0: no fits).
        .init(key: "measured_hbm_gbps", field: \.measured.reference.hbmGBps, range: 0...1e7, allowsInfinite: false),
        .init(key: "measured_peak_fp8_tflops", field: \.measured.reference.peakFP8TFLOPS, range: 1e-3...1e6, allowsInfinite: false),
        .init(key: "measured_peak_bf16_tflops", field: \.measured.reference.peakBF16TFLOPS, range: 1e-3...1e6, allowsInfinite: false),
    ]

    /// The parameter named `key` (a key under `hardware:`); traps on a name not in
    /// ``parameters``, which only the program's own tables pass.
    public static func parameter(_ key: String) -> HardwareParameter {
        guard let p = parameters.first(where: { $0.key == key }) else { preconditionFailure("no hardware parameter \(key)") }
        return p
    }
}

/// A hardware parameter that a calibration fit searches, and the range it searches.
public struct SearchedParameter: Sendable {
    public let parameter: HardwareParameter
    /// The search range (inside the parameter's valid range).
    public let range: ClosedRange<Double>
    public var name: String { parameter.key }
    public var field: WritableKeyPath<Hardware, Double> { parameter.field }

    /// The parameter named `key` in ``Hardware/parameters``, searched over `range`.
    public init(_ key: String, _ range: ClosedRange<Double>) {
        parameter = Hardware.parameter(key)
        self.range = range
    }
}

extension Array where Element == SearchedParameter {
    /// The overrides (`hardware.<key>=value`) that apply these parameters' values in
    /// `hardware` to a scenario, exactly as `epsim sweep --vary` would.
    public func overrides(from hardware: Hardware) -> [Override] { map { $0.parameter.override(from: hardware) } }

    /// The `hardware:` block that applies these parameters' values in `hardware` on top of
    /// `preset` (the same values as ``overrides(from:)``), to paste into a scenario.
    public func yamlBlock(_ hardware: Hardware, preset: String) -> String {
        var out = "hardware:\n  preset: \(preset)\n"
        for o in overrides(from: hardware) { out += "  \(o.keyPath.dropFirst("hardware.".count)): \(o.value)\n" }
        return out
    }

    /// `(field, range)` pairs for ``CoordinateSearch``.
    var searchSpace: [(WritableKeyPath<Hardware, Double>, ClosedRange<Double>)] { map { ($0.field, $0.range) } }
}
