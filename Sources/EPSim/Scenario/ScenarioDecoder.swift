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
        var scenarioWorkload = workload
        if let program = try? Program(spec: schedule, denseLayers: model.model.denseLayers, moeLayers: model.model.moeLayers) {
            scenarioWorkload.maxRequestsPerRank = workload.requestCap(microBatches: program.microBatches)
        }
        let network = try decodeNetwork(root.optional("network")?.mapping(), hardware: hardware, cluster: cluster)
        let costsValue = root.optional("costs")
        let costs = try decodeCosts(costsValue?.mapping(), ranks: cluster.ranks, hardware: hardware)
        let capacityValue = (try? workloadValue?.mapping().optional("max_dispatch_tokens_per_rank")) ?? nil
        if costs.expertGEMM == .padded && workload.maxDispatchTokensPerRank == nil {
            let at = (try? costsValue?.mapping().optional("expert_gemm")) ?? nil
            throw (at ?? rootValue).error(
                .inconsistent, "expert_gemm: padded computes ranks x max_dispatch_tokens_per_rank rows per expert: set workload.max_dispatch_tokens_per_rank")
        }
        if let capacity = workload.maxDispatchTokensPerRank,
            let why = DeepEPLimits.violation(
                capacity: capacity, qpDepth: workload.qpDepth, ranks: cluster.ranks, hidden: model.model.hidden, fp8: model.model.dispatchPrecision == .fp8)
        {
            throw (capacityValue ?? rootValue).error(.inconsistent, why)
        }
        let host = try decodeHost(root.optional("host"), ranks: cluster.ranks, seed: workload.seed)
        let microBatches = (try? Program(spec: schedule, denseLayers: model.model.denseLayers, moeLayers: model.model.moeLayers))?.microBatches ?? 1
        let serving = try decodeServing(root.optional("serving"), workload: workload, model: model.model, microBatches: microBatches, ranks: cluster.ranks)
        try root.finish()
        if let serving {
            // Serving decides the batches; the static workload (what `run` simulates and the
            // capacity check reads) is a full batch of every rank.
            scenarioWorkload.tokensPerRank = Array(repeating: serving.maxRequestsPerRank, count: cluster.ranks)
            scenarioWorkload.tokenDistribution = nil
        }

        let scenario = Scenario(
            name: name, description: description, cluster: cluster, model: model.model, workload: scenarioWorkload,
            schedule: schedule, steps: steps, network: network, costs: costs, host: host, serving: serving)
        if let (r, mb, t) = scenario.capacityOverflow() {
            throw (capacityValue ?? workloadValue ?? rootValue).error(
                .inconsistent,
                "rank \(r) dispatches \(t) tokens in \(schedule.microBatchName(mb)) of schedule \(schedule.name), more than max_dispatch_tokens_per_rank (\(workload.maxDispatchTokensPerRank ?? 0)): DeepEP refuses a dispatch larger than its buffers")
        }
        return scenario
    }

    func decodeHardware(_ value: YAMLValue) throws -> Hardware {
        if !value.isMapping {
            return Hardware.preset(try value.choice(Hardware.presetNames))!
        }
        let map = try value.mapping()
        var h = try map.optional("preset").map { Hardware.preset(try $0.choice(Hardware.presetNames))! } ?? .h800
        for p in Hardware.parameters {
            guard let v = map.optional(p.key) else { continue }
            h[keyPath: p.field] = p.allowsInfinite ? try v.doubleOrInfinite(in: p.range, what: p.what) : try v.double(in: p.range)
        }
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
