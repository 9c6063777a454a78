import EventCore
import Foundation

/// Reads the scenario tree section by section, with defaults and range checks.
///
/// Order matters: the hardware preset sets defaults for the cluster, network and costs;
/// the model preset for the model and routing; the routing's popularity for a greedy
/// placement.
struct ScenarioDecoder {
    let file: String
    let baseDirectory: String

    func decode(_ rootValue: YAMLValue, defaultName: String) throws -> Scenario {
        let root = try rootValue.mapping()
        let name = try root.optional("name")?.string() ?? defaultName
        let description = try root.optional("description")?.string() ?? ""
        let hardwareValue = root.optional("hardware")
        let hardware = try hardwareValue.map(decodeHardware)
        let clusterMap = try root.required("cluster", expected: "a mapping with at least `ranks`").mapping()
        let cluster = try decodeCluster(clusterMap, hardware: hardware)
        let modelValue = root.optional("model")
        var model = try decodeModel(modelValue, ranks: cluster.ranks, at: modelValue ?? rootValue)
        let workloadValue = root.optional("workload")
        let workload = try decodeWorkload(workloadValue?.mapping(), ranks: cluster.ranks, model: model.model, at: workloadValue ?? rootValue)
        model.model.expertPlacement = try resolvePlacement(model, workload: workload, ranks: cluster.ranks)
        let scheduleValue = root.optional("schedule")
        let schedule = try scheduleValue.map { try decodeSchedule($0, cluster: cluster) } ?? ScheduleSpec.preset("none")!
        let steps = try root.optional("steps")?.int(in: 1...ScenarioLimits.maxSteps) ?? 1
        do {
            _ = try Program(spec: schedule, denseLayers: model.model.denseLayers, moeLayers: model.model.moeLayers)
        } catch {
            throw (scheduleValue ?? rootValue).error(.invalidSchedule, "invalid schedule \"\(schedule.name)\": \(error.message)")
        }
        let network = try decodeNetwork(root.optional("network")?.mapping(), hardware: hardware, cluster: cluster)
        let costs = try decodeCosts(root.optional("costs")?.mapping(), ranks: cluster.ranks, hardware: hardware)
        try root.finish()

        return Scenario(
            name: name, description: description, cluster: cluster, model: model.model, workload: workload,
            schedule: schedule, steps: steps, network: network, costs: costs)
    }

    func decodeHardware(_ value: YAMLValue) throws -> Hardware {
        if !value.isMapping {
            return Hardware.preset(try value.choice(Hardware.presetNames))!
        }
        let map = try value.mapping()
        var h = try map.optional("preset").map { Hardware.preset(try $0.choice(Hardware.presetNames))! } ?? .h800
        func number(_ key: String, _ range: ClosedRange<Double>, _ field: WritableKeyPath<Hardware, Double>) throws {
            if let v = map.optional(key) { h[keyPath: field] = try v.double(in: range) }
        }
        try number("peak_bf16_tflops", 1e-3...1e6, \.peakBF16TFLOPS)
        try number("peak_fp8_tflops", 1e-3...1e6, \.peakFP8TFLOPS)
        try number("hbm_gbps", 1e-3...1e7, \.hbmGBps)
        try number("nvlink_gbps", 1e-3...1e7, \.nvlinkGBps)
        try number("nvlink_latency_us", 0...1e6, \.nvlinkLatencyMicros)
        try number("rdma_gbps", 1e-3...1e7, \.rdmaGBps)
        try number("rdma_latency_us", 0...1e6, \.rdmaLatencyMicros)
        try number("compute_efficiency", 1e-3...1, \.computeEfficiency)
        try number("memory_efficiency", 1e-3...1, \.memoryEfficiency)
        try number("kernel_overhead_us", 0...1e6, \.kernelOverheadMicros)
        // The DeepEP kernel costs: what `epsim calibrate --fit` prints for a cluster.
        try number("dispatch_send_fixed_us", 0...1e6, \.dispatchSendFixedMicros)
        try number("dispatch_send_per_message_us", 0...1e3, \.dispatchSendPerMessageMicros)
        try number("dispatch_recv_fixed_us", 0...1e6, \.dispatchRecvFixedMicros)
        try number("dispatch_recv_copy_gbps", 1e-3...1e7, \.dispatchRecvCopyGBps)
        try number("combine_send_fixed_us", 0...1e6, \.combineSendFixedMicros)
        try number("combine_send_per_message_us", 0...1e3, \.combineSendPerMessageMicros)
        try number("combine_recv_fixed_us", 0...1e6, \.combineRecvFixedMicros)
        try number("combine_recv_reduce_gbps", 1e-3...1e7, \.combineRecvReduceGBps)
        // As their twins under network: and costs: (`infinite` allowed; a duration's range).
        if let v = map.optional("self_copy_gbps") { h.selfCopyGBps = try v.bandwidth() }
        try number("launch_gap_us", 0...ScenarioLimits.maxMicros, \.launchGapMicros)
        try number("expert_ffn_fixed_us", 0...1e6, \.expertFFNFixedMicros)
        try number("expert_ffn_stream_gbps", 0...1e7, \.expertFFNStreamGBps)
        try number("expert_ffn_tflops", 1e-3...1e6, \.expertFFNTFLOPS)
        if let v = map.optional("dispatch_recv_pair_gbps") { h.dispatchRecvPairGBps = try v.bandwidth() }
        if let v = map.optional("combine_send_pair_gbps") { h.combineSendPairGBps = try v.bandwidth() }
        if let v = map.optional("sms") { h.sms = try v.int(in: 1...1024) }
        try map.finish()
        return h
    }

    func decodeCluster(_ map: YAMLMapping, hardware: Hardware?) throws -> Cluster {
        let ranks = try map.required("ranks", expected: "the number of GPUs, 1...\(ScenarioLimits.maxRanks)")
            .int(in: 1...ScenarioLimits.maxRanks, what: "a number of ranks")
        let gpn = try map.optional("gpus_per_node")?.int(in: 1...1024) ?? 8
        let sms = try map.optional("sms_per_gpu")?.int(in: 1...1024) ?? hardware?.sms ?? 132
        try map.finish()
        return Cluster(ranks: ranks, gpusPerNode: gpn, smsPerGPU: sms)
    }
}
