import EventCore
import Foundation

extension ScenarioDecoder {
    /// A link's `bandwidth_gbps` and `latency_us`; `extra` reads the link's own further keys
    /// (NVLink's `ingress_gbps`, RDMA's `message_rate_mps`) before the mapping is finished.
    func decodeLink(
        _ value: YAMLValue?, defaultGBps: Double, defaultLatencyMicros: Double, extra: (YAMLMapping?) throws -> Void = { _ in }
    ) throws -> LinkConfig {
        let map = try value?.mapping()
        let bw = try map?.optional("bandwidth_gbps")?.bandwidth() ?? defaultGBps
        let lat = try map?.optional("latency_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "a latency in microseconds") ?? defaultLatencyMicros
        try extra(map)
        try map?.finish()
        return LinkConfig(bandwidthGBps: bw, latency: SimTime(micros: lat))
    }

    func decodeNetwork(_ map: YAMLMapping?, hardware: Hardware?, cluster: Cluster) throws -> NetworkConfig {
        let kind = try map?.optional("model").map { NetworkKind(rawValue: try $0.choice(NetworkKind.allCases.map(\.rawValue)))! } ?? .ports
        var ingress = hardware?.nvlinkIngressGBps ?? .infinity
        var messageRate = hardware?.nicMessageRateMps ?? .infinity
        let nvlink = try decodeLink(map?.optional("nvlink"), defaultGBps: hardware?.nvlinkGBps ?? 160, defaultLatencyMicros: hardware?.nvlinkLatencyMicros ?? 2) {
            ingress = try $0?.optional("ingress_gbps")?.bandwidth() ?? ingress
        }
        let rdma = try decodeLink(map?.optional("rdma"), defaultGBps: hardware?.rdmaGBps ?? 50, defaultLatencyMicros: hardware?.rdmaLatencyMicros ?? 4) {
            messageRate = try $0?.optional("message_rate_mps")?.rate() ?? messageRate
        }
        let nvlinkForLL = try map?.optional("nvlink_for_ll")?.bool() ?? true
        let fence = try map?.optional("fence")?.bool() ?? false
        let during = try map?.optional("rdma_data").map { try $0.choice(["during-send", "after-send"]) == "during-send" }
        let selfCopy = try map?.optional("self_copy_gbps")?.bandwidth() ?? hardware?.selfCopyGBps
        var nics: Int?
        if let v = map?.optional("nics_per_node") {
            let count = try v.int(in: 1...cluster.gpusPerNode, what: "a NIC count per node (1 to gpus_per_node)")
            guard cluster.gpusPerNode % count == 0 else {
                throw v.error(.inconsistent, "nics_per_node \(count) must divide gpus_per_node \(cluster.gpusPerNode): each NIC serves the same number of GPUs")
            }
            // The default written out is the default: one canonical scenario (and hash).
            nics = count == cluster.gpusPerNode ? nil : count
        }
        try map?.finish()
        return NetworkConfig(
            kind: kind, nvlink: nvlink, rdma: rdma, nvlinkForLowLatency: nvlinkForLL, fenceControlMessages: fence,
            rdmaDataDuringSend: during, selfCopyGBps: selfCopy, nicsPerNode: nics, nvlinkIngressGBps: ingress, rdmaMessageRateMps: messageRate)
    }

    func micros(_ map: YAMLMapping?, _ key: String, ranks: Int, default value: Double) throws -> [SimTime] {
        guard let v = map?.optional(key) else { return Array(repeating: SimTime(micros: value), count: ranks) }
        return try v.perRank(count: ranks) { SimTime(micros: try $0.double(in: 0...ScenarioLimits.maxMicros, what: "a duration in microseconds")) }
    }

    /// A SEND's costs; `pairGBps` nil: the kernel has no per-pair limit and no `pair_gbps` key.
    func decodeSend(_ value: YAMLValue?, ranks: Int, fixed: Double, perMessage: Double, pairGBps: Double?) throws -> SendCost {
        let map = try value?.mapping()
        let fixedTimes = try micros(map, "fixed_us", ranks: ranks, default: fixed)
        let per = try map?.optional("per_message_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "a duration in microseconds") ?? perMessage
        let pair = try pairGBps.map { try map?.optional("pair_gbps")?.bandwidth() ?? $0 } ?? .infinity
        try map?.finish()
        return SendCost(fixed: fixedTimes, perMessage: SimTime(micros: per), pairGBps: pair)
    }

    /// A RECV's costs; `pairGBps` nil: the kernel has no per-pair limit and no `pair_gbps` key.
    func decodeRecv(_ value: YAMLValue?, ranks: Int, fixed: Double, gbps defaultGBps: Double, pairGBps: Double?) throws -> RecvCost {
        let map = try value?.mapping()
        let fixedTimes = try micros(map, "fixed_us", ranks: ranks, default: fixed)
        let gbps = try map?.optional("copy_gbps")?.bandwidth() ?? defaultGBps
        let pair = try pairGBps.map { try map?.optional("pair_gbps")?.bandwidth() ?? $0 } ?? .infinity
        try map?.finish()
        return RecvCost(fixed: fixedTimes, copyGBps: gbps, pairGBps: pair)
    }

    /// A compute duration: one value or a per-rank list for the whole batch, a mapping
    /// `{a: ..., b: ...}` giving each micro-batch's duration explicitly, or (when the key is
    /// absent) the table's points for this kind, the roofline, or the default fixed value.
    func computeCost(
        _ map: YAMLMapping?, _ key: String, kind: KernelKind, ranks: Int, default value: Double, roofline: Bool,
        table: [KernelKind: [MeasuredPoint]]
    ) throws -> ComputeCost {
        guard let v = map?.optional(key) else {
            if let points = table[kind] { return .table(points) }
            return roofline ? .roofline : .wholeBatch(Array(repeating: SimTime(micros: value), count: ranks))
        }
        guard v.isMapping else { return .wholeBatch(try micros(map, key, ranks: ranks, default: value)) }
        let split = try v.mapping()
        let a = try micros(split, "a", ranks: ranks, default: 0)
        let b = try micros(split, "b", ranks: ranks, default: 0)
        guard split.has("a") && split.has("b") else { throw v.error(.missingKey, "expected both a and b (the duration of each micro-batch)") }
        try split.finish()
        return .perMicroBatch(a: a, b: b)
    }

    /// A measured-times CSV: `kind,tokens,us` per line (header optional), kinds ATTN0,
    /// ATTN1, SHARED, MLP, DENSE; tokens are the kernel's own tokens (received tokens for MLP).
    func loadTable(_ value: YAMLValue) throws -> [KernelKind: [MeasuredPoint]] {
        let name = try value.string()
        let path = name.hasPrefix("/") ? name : baseDirectory + "/" + name
        let text: String
        do {
            text = try Scenario.readText(path: path, expected: "a measured-times CSV", maxBytes: Scenario.maxDataFileBytes)
        } catch let error as ScenarioError {
            throw value.error(.unreadableFile, "the measured-times table \(path) \(error.message)")
        }
        var table: [KernelKind: [MeasuredPoint]] = [:]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || (i == 0 && line.hasPrefix("kind")) { continue }
            let cells = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            func fail(_ m: String) -> ScenarioError { ScenarioError(.wrongType, file: path, keyPath: "", line: i + 1, message: m) }
            guard cells.count == 3 else { throw fail("expected kind,tokens,us, found \(cells.count) fields") }
            guard let kind = KernelKind(name: cells[0]), kind.isCompute else {
                throw fail("expected a compute kernel (ATTN0, ATTN1, SHARED, MLP, DENSE), found \"\(cells[0])\"")
            }
            guard let tokens = Double(cells[1]), tokens.isFinite, tokens >= 0 else { throw fail("expected a non-negative token count, found \"\(cells[1])\"") }
            guard let us = Double(cells[2]), us.isFinite, (0...ScenarioLimits.maxMicros).contains(us) else {
                throw fail("expected a time in us in 0...\(Int(ScenarioLimits.maxMicros)), found \"\(cells[2])\"")
            }
            if table[kind]?.contains(where: { $0.tokens == tokens }) == true { throw fail("\(kind) at \(cells[1]) tokens is given twice") }
            table[kind, default: []].append(MeasuredPoint(tokens: tokens, micros: us))
        }
        return table.mapValues { $0.sorted { $0.tokens < $1.tokens } }
    }

    func decodeCosts(_ map: YAMLMapping?, ranks: Int, hardware: Hardware?) throws -> CostConfig {
        let hw = hardware ?? .h800
        let roofline = try map?.optional("compute").map { try $0.choice(["fixed", "roofline"]) == "roofline" } ?? (hardware != nil)
        let table = try map?.optional("table").map(loadTable) ?? [:]
        func compute(_ key: String, _ kind: KernelKind, _ value: Double) throws -> ComputeCost {
            try computeCost(map, key, kind: kind, ranks: ranks, default: value, roofline: roofline, table: table)
        }
        let preset = hardware != nil
        var costs = CostConfig(
            attn0: try compute("attn0_us", .attn0, 30),
            attn1: try compute("attn1_us", .attn1, 60),
            shared: try compute("shared_us", .shared, 15),
            gemm: try compute("gemm_us", .mlp, 50),
            denseMLP: try compute("dense_mlp_us", .dense, 40),
            hardware: hw,
            dispatchSend: try decodeSend(
                map?.optional("dispatch_send"), ranks: ranks, fixed: preset ? hw.dispatchSendFixedMicros : 8,
                perMessage: preset ? hw.dispatchSendPerMessageMicros : 0.02, pairGBps: nil),
            dispatchRecv: try decodeRecv(
                map?.optional("dispatch_recv"), ranks: ranks, fixed: preset ? hw.dispatchRecvFixedMicros : 4,
                gbps: preset ? hw.dispatchRecvCopyGBps : 300, pairGBps: preset ? hw.dispatchRecvPairGBps : .infinity),
            combineSend: try decodeSend(
                map?.optional("combine_send"), ranks: ranks, fixed: preset ? hw.combineSendFixedMicros : 8,
                perMessage: preset ? hw.combineSendPerMessageMicros : 0.02, pairGBps: preset ? hw.combineSendPairGBps : .infinity),
            combineRecv: try decodeRecv(
                map?.optional("combine_recv"), ranks: ranks, fixed: preset ? hw.combineRecvFixedMicros : 4,
                gbps: preset ? hw.combineRecvReduceGBps : 1500, pairGBps: nil))
        costs.launchGap = SimTime(
            micros: try map?.optional("launch_gap_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "a duration in microseconds")
                ?? (preset ? hw.launchGapMicros : 0))
        costs.expertGEMM = try map?.optional("expert_gemm").map { ExpertGEMMLayout(rawValue: try $0.choice(ExpertGEMMLayout.allCases.map(\.rawValue)))! } ?? .masked
        try map?.finish()
        return costs
    }

    func decodeSchedule(_ value: YAMLValue, cluster: Cluster) throws -> ScheduleSpec {
        if !value.isMapping {
            return ScheduleSpec.preset(try value.choice(ScheduleSpec.presetNames))!
        }
        let map = try value.mapping()
        let name = try map.optional("name")?.string() ?? "custom"
        let mode = try map.optional("mode").map { CommunicationMode(rawValue: try $0.choice(CommunicationMode.allCases.map(\.rawValue)))! } ?? .lowLatency
        let microBatches = try map.optional("micro_batches")?.int(in: 1...2, what: "a number of micro-batches") ?? 1
        func refs(_ key: String, required: Bool) throws -> [KernelRef] {
            let v = required ? try map.required(key, expected: "a list of kernels such as [ATTN0, ATTN1, SHARED, DISPATCH, MLP, COMBINE]") : map.optional(key)
            guard let v else { return [] }
            // A list of kernels, or one string of kernels separated by spaces.
            let items: [(YAMLValue, String)] =
                v.isSequence ? try v.list().map { ($0, try $0.string()) } : try v.string().split(separator: " ").map { (v, String($0)) }
            return try items.map { item, text in
                switch KernelRef.parse(text) {
                case .success(let ref): return ref
                case .failure(let e): throw item.error(.invalidSchedule, e.message)
                }
            }
        }
        let prologue = try refs("prologue", required: false)
        let body = try refs("body", required: true)
        let epilogue = try refs("epilogue", required: false)
        let usesComm = (prologue + body + epilogue).contains { $0.stream == .comm }
        let commSMs = try map.optional("comm_sms")?.int(in: 0...(cluster.smsPerGPU - 1), what: "a number of SMs") ?? (usesComm ? 24 : 0)
        let overlapValue = map.optional("overlap_down_gemm")
        let overlap = try overlapValue?.bool() ?? false
        if let overlapValue, overlap, !(prologue + body + epilogue).contains(where: { $0.kind == .sendCombine && $0.stream == .comm }) {
            throw overlapValue.error(.invalidSchedule, "overlap_down_gemm needs a SEND-C on the comm stream (SEND-C@comm) to overlap with the MLP")
        }
        try map.finish()
        return ScheduleSpec(
            name: name, mode: mode, microBatches: microBatches, commSMs: commSMs,
            prologue: prologue, body: body, epilogue: epilogue, overlapDownGEMM: overlap)
    }
}
