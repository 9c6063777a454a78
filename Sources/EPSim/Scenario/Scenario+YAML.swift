import EventCore
import Foundation
import Yams

/// Limits that keep a scenario within what this machine can hold; checked before anything
/// is allocated, so an absurd file is refused with a message instead of exhausting memory.
public enum ScenarioLimits {
    public static let maxRanks = 8192
    public static let maxExperts = 65536
    public static let maxTopK = 64
    public static let maxLayers = 1024
    public static let maxTokensPerRank = 1 << 20
    public static let maxSteps = 100_000
    /// Upper bound on flows a run may carry (steps x layers x micro-batches x 2 x N^2).
    public static let maxFlows: Double = 5e10
    /// Upper bound on selections of one layer (they are counted in 32-bit integers).
    public static let maxSelectionsPerLayer = Int(Int32.max)
    public static let maxMicros = 1e9
}

extension Scenario {
    /// Replaces the schedule (e.g. from `epsim run --schedule`), validating it against the
    /// scenario's layers.
    public mutating func setSchedule(_ spec: ScheduleSpec) throws(ScheduleError) {
        _ = try Program(spec: spec, denseLayers: model.denseLayers, moeLayers: model.moeLayers)
        schedule = spec
    }

    /// Reads and validates the scenario file at `path`.
    ///
    /// - Throws: ``ScenarioError`` naming the file, key path and line for any problem.
    public static func load(path: String) throws -> Scenario {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ScenarioError(.unreadableFile, file: path, keyPath: "", message: "cannot read the file (\(Self.reason(error)))")
        }
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return try parse(yaml: text, file: path, defaultName: stem)
    }

    /// Parses scenario YAML text; `file` is used only in error messages.
    public static func parse(yaml text: String, file: String, defaultName: String = "scenario") throws -> Scenario {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ScenarioError(.syntax, file: file, keyPath: "", message: "the file is empty; expected a mapping with at least cluster.ranks")
            }
            root = node
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw Self.syntaxError(error, file: file)
        } catch {
            throw ScenarioError(.syntax, file: file, keyPath: "", message: "not valid YAML (\(error))")
        }
        return try ScenarioDecoder(file: file).decode(YAMLValue(node: root, path: "", file: file), defaultName: defaultName)
    }

    static func syntaxError(_ error: YamlError, file: String) -> ScenarioError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return ScenarioError(.syntax, file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML syntax error: \(problem)")
        case .composer(_, let problem, let mark, _):
            return ScenarioError(.syntax, file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML error: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ScenarioError(
                .inconsistent, file: file, keyPath: duplicates.sorted().joined(separator: ", "),
                line: context.mark.line, column: context.mark.column,
                message: "key given twice in one mapping; give each key once")
        default:
            return ScenarioError(.syntax, file: file, keyPath: "", message: "YAML error: \(error)")
        }
    }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError { return underlying.localizedDescription }
        return ns.localizedDescription
    }
}

/// Reads the scenario tree section by section, with defaults and range checks.
struct ScenarioDecoder {
    let file: String

    func decode(_ rootValue: YAMLValue, defaultName: String) throws -> Scenario {
        let root = try rootValue.mapping()
        let name = try root.optional("name")?.string() ?? defaultName
        let description = try root.optional("description")?.string() ?? ""
        let clusterMap = try root.required("cluster", expected: "a mapping with at least `ranks`").mapping()
        let cluster = try decodeCluster(clusterMap)
        let modelValue = root.optional("model")
        let model = try decodeModel(modelValue?.mapping(), ranks: cluster.ranks, at: modelValue ?? rootValue)
        let scheduleValue = root.optional("schedule")
        let schedule = try scheduleValue.map { try decodeSchedule($0, cluster: cluster) } ?? ScheduleSpec.preset("none")!
        let steps = try root.optional("steps")?.int(in: 1...ScenarioLimits.maxSteps) ?? 1
        let workloadValue = root.optional("workload")
        let workload = try decodeWorkload(workloadValue?.mapping(), ranks: cluster.ranks, model: model, at: workloadValue ?? rootValue)
        do {
            _ = try Program(spec: schedule, denseLayers: model.denseLayers, moeLayers: model.moeLayers)
        } catch {
            throw (scheduleValue ?? rootValue).error(.invalidSchedule, "invalid schedule \"\(schedule.name)\": \(error.message)")
        }
        let network = try decodeNetwork(root.optional("network")?.mapping())
        let costs = try decodeCosts(root.optional("costs")?.mapping(), ranks: cluster.ranks)
        try root.finish()

        let ranks = Double(cluster.ranks)
        let flows = Double(steps) * Double(model.moeLayers) * Double(schedule.microBatches) * 2 * ranks * ranks
        if flows > ScenarioLimits.maxFlows {
            throw ScenarioError(
                .tooLarge, file: file, keyPath: "steps",
                message:
                    "the run would carry \(String(format: "%.3g", flows)) flows (steps x moe_layers x micro-batches x 2 x ranks^2); at most \(String(format: "%.0g", ScenarioLimits.maxFlows)) are allowed: reduce steps, layers or ranks"
            )
        }
        return Scenario(
            name: name, description: description, cluster: cluster, model: model, workload: workload,
            schedule: schedule, steps: steps, network: network, costs: costs)
    }

    func decodeCluster(_ map: YAMLMapping) throws -> Cluster {
        let ranks = try map.required("ranks", expected: "the number of GPUs, 1...\(ScenarioLimits.maxRanks)")
            .int(in: 1...ScenarioLimits.maxRanks, what: "a number of ranks")
        let gpn = try map.optional("gpus_per_node")?.int(in: 1...1024) ?? 8
        let sms = try map.optional("sms_per_gpu")?.int(in: 1...1024) ?? 132
        try map.finish()
        return Cluster(ranks: ranks, gpusPerNode: gpn, smsPerGPU: sms)
    }

    func decodeModel(_ map: YAMLMapping?, ranks: Int, at value: YAMLValue) throws -> MoEModel {
        let hiddenValue = map?.optional("hidden")
        let hidden = try hiddenValue?.int(in: 128...65536) ?? 7168
        if let hiddenValue, hidden % 128 != 0 {
            throw hiddenValue.error(.outOfRange, "expected a multiple of 128 (FP8 scales cover 128 channels), found \(hidden)")
        }
        let expertsValue = map?.optional("experts")
        let experts = try expertsValue?.int(in: 1...ScenarioLimits.maxExperts) ?? 256
        let topKValue = map?.optional("top_k")
        let topK = try topKValue?.int(in: 1...ScenarioLimits.maxTopK) ?? 8
        if topK > experts {
            throw (topKValue ?? value).error(.inconsistent, "top_k (\(topK)) must not exceed model.experts (\(experts)): a token picks distinct experts")
        }
        let moeLayers = try map?.optional("moe_layers")?.int(in: 1...ScenarioLimits.maxLayers) ?? 1
        let denseLayers = try map?.optional("dense_layers")?.int(in: 0...ScenarioLimits.maxLayers) ?? 0
        let precision =
            try map?.optional("dispatch_dtype").map { DispatchPrecision(rawValue: try $0.choice(DispatchPrecision.allCases.map(\.rawValue)))! } ?? .fp8
        let placement: [Int32]
        if let placementValue = map?.optional("placement") {
            let items = try placementValue.list()
            guard items.count == experts else {
                throw placementValue.error(.wrongLength, "expected the rank of each of the \(experts) experts, found a list of \(items.count)")
            }
            placement = try items.map { Int32(try $0.int(in: 0...(ranks - 1), what: "a rank")) }
            var hosted = [Int](repeating: 0, count: ranks)
            for r in placement { hosted[Int(r)] += 1 }
            if let empty = hosted.firstIndex(of: 0) {
                throw placementValue.error(
                    .inconsistent, "rank \(empty) hosts no expert; every rank must host at least one (DeepEP gives each rank E/N experts)")
            }
        } else {
            guard experts % ranks == 0 else {
                throw (expertsValue ?? value).error(
                    .inconsistent, "model.experts (\(experts)) must be divisible by cluster.ranks (\(ranks)) unless model.placement is given")
            }
            placement = MoEModel.contiguousPlacement(experts: experts, ranks: ranks)
        }
        try map?.finish()
        return MoEModel(
            hidden: hidden, experts: experts, topK: topK, moeLayers: moeLayers, denseLayers: denseLayers,
            dispatchPrecision: precision, placement: placement)
    }

    func decodeWorkload(_ map: YAMLMapping?, ranks: Int, model: MoEModel, at value: YAMLValue) throws -> Workload {
        let tokensValue = map?.optional("tokens_per_rank")
        let tokens =
            try tokensValue?.perRank(count: ranks) {
                try $0.int(in: 0...ScenarioLimits.maxTokensPerRank, what: "a non-negative number of tokens")
            } ?? Array(repeating: 128, count: ranks)
        let selections = tokens.reduce(0, +) * model.topK
        if selections > ScenarioLimits.maxSelectionsPerLayer {
            throw (tokensValue ?? value).error(
                .tooLarge, "\(selections) selections per layer (tokens x top_k) exceed the limit of \(ScenarioLimits.maxSelectionsPerLayer)")
        }
        let routing = try map?.optional("routing").map { RoutingKind(rawValue: try $0.choice(RoutingKind.allCases.map(\.rawValue)))! } ?? .balanced
        let seed = try map?.optional("seed")?.int(in: 0...Int.max, what: "a non-negative integer seed") ?? 0
        var splitA: [Int]?
        if let splitValue = map?.optional("micro_batch_a_tokens") {
            let split = try splitValue.perRank(count: ranks) { try $0.int(in: 0...ScenarioLimits.maxTokensPerRank, what: "a number of tokens") }
            if let r = split.indices.first(where: { split[$0] > tokens[$0] }) {
                let at = splitValue.isSequence ? try splitValue.list()[r] : splitValue
                throw at.error(.inconsistent, "micro-batch A of rank \(r) cannot hold \(split[r]) tokens: the rank has \(tokens[r])")
            }
            splitA = split
        }
        try map?.finish()
        return Workload(tokensPerRank: tokens, routing: routing, seed: UInt64(seed), microBatchATokens: splitA)
    }

    func decodeLink(_ value: YAMLValue?, defaultGBps: Double, defaultLatencyMicros: Double) throws -> LinkConfig {
        guard let map = try value?.mapping() else {
            return LinkConfig(bandwidthGBps: defaultGBps, latency: SimTime(micros: defaultLatencyMicros))
        }
        let bw = try map.optional("bandwidth_gbps")?.bandwidth() ?? defaultGBps
        let lat = try map.optional("latency_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "a latency in microseconds") ?? defaultLatencyMicros
        try map.finish()
        return LinkConfig(bandwidthGBps: bw, latency: SimTime(micros: lat))
    }

    func decodeNetwork(_ map: YAMLMapping?) throws -> NetworkConfig {
        let kind = try map?.optional("model").map { NetworkKind(rawValue: try $0.choice(NetworkKind.allCases.map(\.rawValue)))! } ?? .ports
        let nvlink = try decodeLink(map?.optional("nvlink"), defaultGBps: 160, defaultLatencyMicros: 2)
        let rdma = try decodeLink(map?.optional("rdma"), defaultGBps: 50, defaultLatencyMicros: 4)
        let nvlinkForLL = try map?.optional("nvlink_for_ll")?.bool() ?? true
        let fence = try map?.optional("fence")?.bool() ?? false
        let during = try map?.optional("rdma_data").map { try $0.choice(["during-send", "after-send"]) == "during-send" }
        try map?.finish()
        return NetworkConfig(kind: kind, nvlink: nvlink, rdma: rdma, nvlinkForLowLatency: nvlinkForLL, fenceControlMessages: fence,
                             rdmaDataDuringSend: during)
    }

    func micros(_ map: YAMLMapping?, _ key: String, ranks: Int, default value: Double) throws -> [SimTime] {
        guard let v = map?.optional(key) else { return Array(repeating: SimTime(micros: value), count: ranks) }
        return try v.perRank(count: ranks) { SimTime(micros: try $0.double(in: 0...ScenarioLimits.maxMicros, what: "a duration in microseconds")) }
    }

    func decodeSend(_ value: YAMLValue?, ranks: Int) throws -> SendCost {
        let map = try value?.mapping()
        let fixed = try micros(map, "fixed_us", ranks: ranks, default: 8)
        let per = try map?.optional("per_message_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "a duration in microseconds") ?? 0.02
        try map?.finish()
        return SendCost(fixed: fixed, perMessage: SimTime(micros: per))
    }

    func decodeRecv(_ value: YAMLValue?, ranks: Int, defaultGBps: Double) throws -> RecvCost {
        let map = try value?.mapping()
        let fixed = try micros(map, "fixed_us", ranks: ranks, default: 4)
        let gbps = try map?.optional("copy_gbps")?.bandwidth() ?? defaultGBps
        try map?.finish()
        return RecvCost(fixed: fixed, copyGBps: gbps)
    }

    /// A compute duration: one value or a per-rank list for the whole batch, or a mapping
    /// `{a: ..., b: ...}` giving each micro-batch's duration explicitly.
    func computeCost(_ map: YAMLMapping?, _ key: String, ranks: Int, default value: Double) throws -> ComputeCost {
        guard let v = map?.optional(key), v.isMapping else { return .wholeBatch(try micros(map, key, ranks: ranks, default: value)) }
        let split = try v.mapping()
        let a = try micros(split, "a", ranks: ranks, default: 0)
        let b = try micros(split, "b", ranks: ranks, default: 0)
        guard split.has("a") && split.has("b") else { throw v.error(.missingKey, "expected both a and b (the duration of each micro-batch)") }
        try split.finish()
        return .perMicroBatch(a: a, b: b)
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
        try map.finish()
        return ScheduleSpec(
            name: name, mode: mode, microBatches: microBatches, commSMs: commSMs,
            prologue: prologue, body: body, epilogue: epilogue)
    }

    func decodeCosts(_ map: YAMLMapping?, ranks: Int) throws -> CostConfig {
        let costs = CostConfig(
            attn0: try computeCost(map, "attn0_us", ranks: ranks, default: 30),
            attn1: try computeCost(map, "attn1_us", ranks: ranks, default: 60),
            shared: try computeCost(map, "shared_us", ranks: ranks, default: 15),
            gemm: try computeCost(map, "gemm_us", ranks: ranks, default: 50),
            denseMLP: try micros(map, "dense_mlp_us", ranks: ranks, default: 40),
            dispatchSend: try decodeSend(map?.optional("dispatch_send"), ranks: ranks),
            dispatchRecv: try decodeRecv(map?.optional("dispatch_recv"), ranks: ranks, defaultGBps: 300),
            combineSend: try decodeSend(map?.optional("combine_send"), ranks: ranks),
            combineRecv: try decodeRecv(map?.optional("combine_recv"), ranks: ranks, defaultGBps: 1500))
        try map?.finish()
        return costs
    }
}
