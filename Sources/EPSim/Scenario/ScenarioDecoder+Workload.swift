import EventCore
import Foundation

extension ScenarioDecoder {
    /// A per-rank integer: one number, a per-rank list, or `{distribution: ..., ...}`.
    /// Returns the step-0 values and the distribution, when one was given.
    func perRankIntegers(_ value: YAMLValue, ranks: Int, range: ClosedRange<Int>, what: String, seed: UInt64, purpose: UInt64)
        throws -> ([Int], Distribution?)
    {
        guard value.isMapping else {
            return (try value.perRank(count: ranks) { try $0.int(in: range, what: what) }, nil)
        }
        let map = try value.mapping()
        let kind = try map.required("distribution", expected: "constant, uniform, normal, lognormal or zipf")
            .choice(["constant", "uniform", "normal", "lognormal", "zipf"])
        let maxValue = Double(range.upperBound)
        func number(_ key: String, _ r: ClosedRange<Double>) throws -> Double {
            try map.required(key, expected: "a number").double(in: r)
        }
        let d: Distribution
        switch kind {
        case "constant": d = .constant(try number("value", Double(range.lowerBound)...maxValue))
        case "uniform":
            let lo = try map.required("min", expected: "an integer").int(in: range, what: what)
            let hiValue = try map.required("max", expected: "an integer")
            let hi = try hiValue.int(in: range, what: what)
            guard hi >= lo else { throw hiValue.error(.inconsistent, "max (\(hi)) must not be below min (\(lo))") }
            d = .uniform(min: lo, max: hi)
        case "normal": d = .normal(mean: try number("mean", 0...maxValue), stddev: try number("stddev", 0...maxValue))
        case "lognormal": d = .lognormal(mu: try number("mu", -50...50), sigma: try number("sigma", 0...20))
        default: d = .zipf(exponent: try number("exponent", 0...20), max: try map.required("max", expected: "an integer").int(in: 1...range.upperBound))
        }
        try map.finish()
        return ((0..<ranks).map { d.draw(rank: $0, step: 0, seed: seed, purpose: purpose, range: range) }, d)
    }

    func decodeWorkload(_ map: YAMLMapping?, ranks: Int, model: MoEModel, at value: YAMLValue) throws -> Workload {
        let seed = UInt64(try map?.optional("seed")?.int(in: 0...Int.max, what: "a non-negative integer seed") ?? 0)
        let (routing, routingMap) = try decodeRoutingKind(map?.optional("routing"))
        var trace: RoutingTrace?
        if routing == .trace {
            trace = try loadTrace(routingMap, ranks: ranks, model: model)
        }
        let phase = try map?.optional("phase").map { InferencePhase(rawValue: try $0.choice(InferencePhase.allCases.map(\.rawValue)))! } ?? .decode
        // Multi-token prediction: each decode request brings 1 + d tokens.
        let draftValue = map?.optional("draft_tokens")
        let draft = try draftValue.map {
            try perRankIntegers($0, ranks: ranks, range: 0...ScenarioLimits.maxDraftTokens, what: "a number of draft tokens", seed: seed, purpose: 0x4D54).0
        }
        if let draftValue, phase == .prefill, draft?.contains(where: { $0 > 0 }) == true {
            throw draftValue.error(.inconsistent, "draft tokens (multi-token prediction) apply to decode, not prefill")
        }
        let acceptanceValue = map?.optional("acceptance_rate")
        let acceptance = try acceptanceValue?.double(in: 0...1, what: "a probability") ?? Workload.defaultAcceptanceRate
        if let acceptanceValue, draft == nil {
            throw acceptanceValue.error(.inconsistent, "acceptance_rate needs draft_tokens (the draft tokens it accepts)")
        }
        let perRequest = (0..<ranks).map { 1 + (draft?[$0] ?? 0) }
        let maxRequests = (0..<ranks).map { ScenarioLimits.maxTokensPerRank / perRequest[$0] }
        let tokensValue = map?.optional("tokens_per_rank")
        let (requests, drawn): ([Int], Distribution?)
        if let tokensValue {
            (requests, drawn) = try perRankIntegers(
                tokensValue, ranks: ranks, range: 0...ScenarioLimits.maxTokensPerRank,
                what: draft == nil ? "a non-negative number of tokens" : "a non-negative number of requests", seed: seed,
                purpose: Workload.tokenPurpose)
            if let r = requests.indices.first(where: { requests[$0] > maxRequests[$0] }) {
                throw tokensValue.error(
                    .tooLarge, "rank \(r)'s \(requests[r]) requests of \(perRequest[r]) tokens exceed \(ScenarioLimits.maxTokensPerRank) tokens")
            }
        } else if let trace {
            // The trace records every token, draft tokens included: whole requests only.
            if let r = (0..<ranks).first(where: { trace.tokensPerRank[$0] % perRequest[$0] != 0 }) {
                throw (draftValue ?? value).error(
                    .inconsistent, "the routing trace gives rank \(r) \(trace.tokensPerRank[r]) tokens, not a whole number of requests of \(perRequest[r]) tokens (1 + draft_tokens)")
            }
            (requests, drawn) = ((0..<ranks).map { trace.tokensPerRank[$0] / perRequest[$0] }, nil)
        } else {
            (requests, drawn) = (Array(repeating: 128, count: ranks), nil)
        }
        let tokens = (0..<ranks).map { requests[$0] * perRequest[$0] }
        if let trace, trace.tokensPerRank != tokens {
            throw (tokensValue ?? value).error(.inconsistent, "the routing trace has \(trace.tokensPerRank) tokens per rank, not \(tokens)")
        }
        let redrawValue = map?.optional("redraw_tokens")
        let redraw = try redrawValue?.bool() ?? false
        if redraw && drawn == nil {
            throw redrawValue!.error(.inconsistent, "redraw_tokens needs tokens_per_rank given as a distribution")
        }
        if redraw && trace != nil {
            throw redrawValue!.error(.inconsistent, "a routing trace fixes the tokens; redraw_tokens cannot change them")
        }
        let distribution = redraw ? drawn : nil
        let selections = (distribution.map { _ in ranks * ScenarioLimits.maxTokensPerRank } ?? tokens.reduce(0, +)) * model.topK
        if selections > ScenarioLimits.maxSelectionsPerLayer {
            throw (tokensValue ?? value).error(
                .tooLarge, "up to \(selections) selections per layer (tokens x top_k) exceed the limit of \(ScenarioLimits.maxSelectionsPerLayer)")
        }
        let kv = try map?.optional("kv_length").map {
            try perRankIntegers($0, ranks: ranks, range: 0...(1 << 24), what: "a context length in tokens", seed: seed, purpose: 0x4B56).0
        }
        var splitA: [Int]?
        if let splitValue = map?.optional("micro_batch_a_tokens") {
            if redraw { throw splitValue.error(.inconsistent, "micro_batch_a_tokens cannot be combined with redraw_tokens") }
            let split = try splitValue.perRank(count: ranks) { try $0.int(in: 0...ScenarioLimits.maxTokensPerRank, what: "a number of tokens") }
            if let r = split.indices.first(where: { split[$0] > tokens[$0] }) {
                let at = splitValue.isSequence ? try splitValue.list()[r] : splitValue
                throw at.error(.inconsistent, "micro-batch A of rank \(r) cannot hold \(split[r]) tokens: the rank has \(tokens[r])")
            }
            if let r = split.indices.first(where: { split[$0] % perRequest[$0] != 0 }) {
                let at = splitValue.isSequence ? try splitValue.list()[r] : splitValue
                throw at.error(
                    .inconsistent, "micro-batch A of rank \(r) must hold whole requests: \(split[r]) tokens is not a multiple of \(perRequest[r]) (1 + draft_tokens)")
            }
            splitA = split
        }
        let popularity = try decodePopularity(routing, routingMap, model: model, seed: seed)
        let groupLimit = try decodeGroupLimit(map?.optional("group_limit"), routing: routing, model: model)
        let replica = try map?.optional("replica").map { ReplicaPolicy(rawValue: try $0.choice(ReplicaPolicy.allCases.map(\.rawValue)))! } ?? .roundRobin
        let capacity = try map?.optional("max_dispatch_tokens_per_rank")?.int(
            in: 1...ScenarioLimits.maxDispatchCapacity, what: "DeepEP's num_max_dispatch_tokens_per_rank (tokens)")
        let qpDepthValue = map?.optional("nvshmem_qp_depth")
        if let qpDepthValue, capacity == nil {
            throw qpDepthValue.error(.inconsistent, "nvshmem_qp_depth limits max_dispatch_tokens_per_rank, which is not set")
        }
        let qpDepth = try qpDepthValue?.int(in: 2...ScenarioLimits.maxQPDepth, what: "NVSHMEM's queue-pair depth (work requests)") ?? DeepEPLimits.defaultQPDepth
        try routingMap?.finish()
        try map?.finish()
        var w = Workload(
            tokensPerRank: requests, routing: routing, seed: seed, microBatchATokens: splitA, phase: phase, kvLength: kv,
            tokenDistribution: distribution, popularity: popularity, groupLimit: groupLimit, trace: trace, replicaPolicy: replica)
        w.draftTokens = draft
        w.acceptanceRate = draft == nil ? 0 : acceptance
        w.maxDispatchTokensPerRank = capacity
        w.qpDepth = qpDepth
        return w
    }

    /// `routing: KIND` or `routing: {kind: KIND, ...}`.
    func decodeRoutingKind(_ value: YAMLValue?) throws -> (RoutingKind, YAMLMapping?) {
        guard let value else { return (.balanced, nil) }
        let names = RoutingKind.allCases.map(\.rawValue)
        if !value.isMapping { return (RoutingKind(rawValue: try value.choice(names))!, nil) }
        let map = try value.mapping()
        return (RoutingKind(rawValue: try map.required("kind", expected: "one of \(names.joined(separator: ", "))").choice(names))!, map)
    }

    func decodePopularity(_ kind: RoutingKind, _ map: YAMLMapping?, model: MoEModel, seed: UInt64) throws -> [Double]? {
        let e = model.experts
        switch kind {
        case .zipf:
            let s = try map?.optional("exponent")?.double(in: 0...20, what: "a Zipf exponent") ?? 1.0
            let permute = try map?.optional("permute")?.bool() ?? true
            // Which experts are hot is a seeded permutation (or expert 0 first, unpermuted).
            var order = Array(0..<e)
            if permute {
                var g = SplitMix64(seed: SplitMix64.mix(seed, 0x21BF))
                for i in stride(from: e - 1, to: 0, by: -1) { order.swapAt(i, g.next(below: i + 1)) }
            }
            var weights = [Double](repeating: 0, count: e)
            for (rank, expert) in order.enumerated() { weights[expert] = pow(Double(rank + 1), -s) }
            return weights
        case .hot:
            let expertsValue = try map?.required("experts", expected: "the list of hot experts")
            let hot = try expertsValue?.list().map { try $0.int(in: 0...(e - 1), what: "an expert") } ?? []
            let factor = try map?.optional("factor")?.double(in: 0...1e9, what: "a popularity factor") ?? 8
            var weights = [Double](repeating: 1, count: e)
            for x in hot { weights[x] = factor }
            return weights
        default:
            return nil
        }
    }

    func decodeGroupLimit(_ value: YAMLValue?, routing: RoutingKind, model: MoEModel) throws -> GroupLimit? {
        let sampled = routing == .uniform || routing == .zipf || routing == .hot
        var limit: GroupLimit?
        if let value {
            if case .scalar = value.node, try value.string() == "none" { return nil }
            let map = try value.mapping()
            let groups = try map.required("groups", expected: "the number of expert groups").int(in: 1...model.experts)
            let top = try map.required("top_groups", expected: "the groups a token may use").int(in: 1...groups)
            try map.finish()
            guard model.experts % groups == 0 else {
                throw value.error(.inconsistent, "model.experts (\(model.experts)) must be divisible by groups (\(groups))")
            }
            guard top * (model.experts / groups) >= model.topK else {
                throw value.error(.inconsistent, "\(top) groups of \(model.experts / groups) experts cannot hold top_k = \(model.topK) distinct experts")
            }
            guard sampled else { throw value.error(.inconsistent, "group_limit applies to uniform, zipf and hot routing, not \(routing.rawValue)") }
            limit = GroupLimit(groups: groups, topGroups: top)
        } else if sampled, model.architecture.groups > 1, model.experts % model.architecture.groups == 0,
            model.architecture.topGroups * (model.experts / model.architecture.groups) >= model.topK
        {
            // A preset with node-limited routing (DeepSeek-V3: 4 of 8 groups) keeps it by default.
            limit = GroupLimit(groups: model.architecture.groups, topGroups: model.architecture.topGroups)
        }
        return limit
    }

    func loadTrace(_ map: YAMLMapping?, ranks: Int, model: MoEModel) throws -> RoutingTrace {
        guard let fileValue = map?.optional("file") else {
            throw ScenarioError(
                .missingKey, file: file, keyPath: "workload.routing.file", message: "missing; a trace routing needs the CSV file of per-token experts")
        }
        let name = try fileValue.string()
        let path = name.hasPrefix("/") ? name : baseDirectory + "/" + name
        let text: String
        do {
            text = try Scenario.readText(path: path, expected: "a routing trace CSV", maxBytes: Scenario.maxDataFileBytes)
        } catch let error as ScenarioError {
            throw fileValue.error(.unreadableFile, "the routing trace \(path) \(error.message)")
        }
        return try RoutingTrace.parse(text, file: path, ranks: ranks, experts: model.experts, topK: model.topK, moeLayers: model.moeLayers)
    }
}
