import EventCore
import Foundation

/// A model read from the file whose expert placement is resolved once the routing is known.
struct ModelDraft {
    enum PlacementSpec {
        case contiguous
        case greedy
        /// The rank of each logical expert (no redundancy).
        case ranks([Int32])
        /// The logical expert of each physical slot.
        case slots([Int32])
    }
    var model: MoEModel
    var physical: Int
    var placement: PlacementSpec
    var placementValue: YAMLValue?
}

extension ScenarioDecoder {
    func decodeModel(_ value: YAMLValue?, ranks: Int, at anchor: YAMLValue) throws -> ModelDraft {
        var map: YAMLMapping?
        var arch: Architecture?
        if let value, !value.isMapping {
            arch = Architecture.preset(try value.choice(Architecture.presetNames))!
        } else {
            map = try value?.mapping()
            arch = try map?.optional("preset").map { Architecture.preset(try $0.choice(Architecture.presetNames))! }
        }
        let hiddenValue = map?.optional("hidden")
        let hidden = try hiddenValue?.int(in: 128...65536) ?? arch?.hidden ?? 7168
        if let hiddenValue, hidden % 128 != 0 {
            throw hiddenValue.error(.outOfRange, "expected a multiple of 128 (FP8 scales cover 128 channels), found \(hidden)")
        }
        let expertsValue = map?.optional("experts")
        let experts = try expertsValue?.int(in: 1...ScenarioLimits.maxExperts) ?? arch?.routedExperts ?? 256
        let topKValue = map?.optional("top_k")
        let topK = try topKValue?.int(in: 1...ScenarioLimits.maxTopK) ?? arch?.topK ?? 8
        if topK > experts {
            throw (topKValue ?? value ?? anchor).error(
                .inconsistent, "top_k (\(topK)) must not exceed model.experts (\(experts)): a token picks distinct experts")
        }
        let moeLayers = try map?.optional("moe_layers")?.int(in: 1...ScenarioLimits.maxLayers) ?? arch.map { $0.layers - $0.denseLayers } ?? 1
        let denseLayers = try map?.optional("dense_layers")?.int(in: 0...ScenarioLimits.maxLayers) ?? arch?.denseLayers ?? 0
        let precision =
            try map?.optional("dispatch_dtype").map { DispatchPrecision(rawValue: try $0.choice(DispatchPrecision.allCases.map(\.rawValue)))! } ?? .fp8
        let attentionPrecision = try map?.optional("attention_dtype").map {
            AttentionPrecision(rawValue: try $0.choice(AttentionPrecision.allCases.map(\.rawValue)))!
        }
        let kvBytes = try map?.optional("kv_cache_dtype").map { try $0.choice(["fp8", "bf16"]) == "fp8" ? 1.0 : 2.0 }
        let physicalValue = map?.optional("physical_experts")
        let physical =
            try physicalValue?.int(in: experts...ScenarioLimits.maxExperts, what: "a number of physical expert slots (at least model.experts)") ?? experts
        var spec = ModelDraft.PlacementSpec.contiguous
        var placementValue: YAMLValue?
        if let slotsValue = map?.optional("slots") {
            let items = try slotsValue.list()
            guard items.count == physical else {
                throw slotsValue.error(.wrongLength, "expected the logical expert of each of the \(physical) physical slots, found a list of \(items.count)")
            }
            let slots = try items.map { Int32(try $0.int(in: 0...(experts - 1), what: "a logical expert")) }
            if let missing = (0..<experts).first(where: { !slots.contains(Int32($0)) }) {
                throw slotsValue.error(.inconsistent, "expert \(missing) is in no slot; every logical expert needs at least one")
            }
            spec = .slots(slots)
            placementValue = slotsValue
        }
        if let p = map?.optional("placement") {
            placementValue = p
            if p.isSequence {
                guard physical == experts else {
                    throw p.error(
                        .inconsistent, "a placement list gives each expert's rank, which needs physical_experts = experts; use model.slots to place replicas")
                }
                let items = try p.list()
                guard items.count == experts else {
                    throw p.error(.wrongLength, "expected the rank of each of the \(experts) experts, found a list of \(items.count)")
                }
                let placement = try items.map { Int32(try $0.int(in: 0...(ranks - 1), what: "a rank")) }
                var hosted = [Int](repeating: 0, count: ranks)
                for r in placement { hosted[Int(r)] += 1 }
                if let empty = hosted.firstIndex(of: 0) {
                    throw p.error(.inconsistent, "rank \(empty) hosts no expert; every rank must host at least one (DeepEP gives each rank E/N experts)")
                }
                spec = .ranks(placement)
            } else {
                spec = try p.choice(["contiguous", "greedy"]) == "greedy" ? .greedy : .contiguous
            }
        } else if physical > experts, case .contiguous = spec {
            spec = .greedy
        }
        if physical > experts, case .contiguous = spec {
            throw (placementValue ?? anchor).error(.inconsistent, "with physical_experts > experts the replicas need a placement: greedy, or model.slots")
        }
        if case .ranks = spec {
        } else if physical % ranks != 0 {
            throw (physicalValue ?? expertsValue ?? value ?? anchor).error(
                .inconsistent,
                physical == experts
                    ? "model.experts (\(experts)) must be divisible by cluster.ranks (\(ranks)) unless model.placement lists each expert's rank"
                    : "model.physical_experts (\(physical)) must be divisible by cluster.ranks (\(ranks)): DeepEP gives every rank the same number of slots")
        }
        try map?.finish()
        var architecture = arch ?? Architecture.generic(hidden: hidden, experts: experts, topK: topK)
        architecture.hidden = hidden
        architecture.routedExperts = experts
        architecture.topK = topK
        if let attentionPrecision { architecture.attentionPrecision = attentionPrecision }
        if let kvBytes { architecture.kvBytes = kvBytes }
        let model = MoEModel(
            hidden: hidden, experts: experts, topK: topK, moeLayers: moeLayers, denseLayers: denseLayers,
            dispatchPrecision: precision, expertPlacement: ExpertPlacement(slotExpert: [], slotRank: [], experts: experts),
            architecture: architecture)
        return ModelDraft(model: model, physical: physical, placement: spec, placementValue: placementValue)
    }

    /// Places the experts now that their expected loads are known.
    func resolvePlacement(_ draft: ModelDraft, workload: Workload, ranks: Int) throws -> ExpertPlacement {
        let m = draft.model
        switch draft.placement {
        case .contiguous:
            return .contiguous(experts: m.experts, ranks: ranks)
        case .ranks(let r):
            return ExpertPlacement(slotExpert: (0..<m.experts).map(Int32.init), slotRank: r, experts: m.experts)
        case .slots(let slots):
            let perRank = draft.physical / ranks
            return ExpertPlacement(slotExpert: slots, slotRank: (0..<draft.physical).map { Int32($0 / perRank) }, experts: m.experts)
        case .greedy:
            let total = Double(workload.tokensPerRank.reduce(0, +) * m.topK)
            let weights = workload.expectedPopularity(experts: m.experts)
            let sum = weights.reduce(0, +)
            return .greedy(load: weights.map { total * $0 / sum }, physical: draft.physical, ranks: ranks)
        }
    }
}

extension Workload {
    /// Relative expected load of each logical expert: the popularity for sampled routing,
    /// the trace's counts for a trace, equal otherwise.
    public func expectedPopularity(experts: Int) -> [Double] {
        if let trace {
            var counts = [Double](repeating: 0, count: experts)
            for table in trace.selections.values { for rank in table { for e in rank { counts[Int(e)] += 1 } } }
            return counts
        }
        return popularity ?? Array(repeating: 1, count: experts)
    }
}
