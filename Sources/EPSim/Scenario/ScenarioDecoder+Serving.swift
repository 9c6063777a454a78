import EventCore
import Foundation

extension ScenarioDecoder {
    /// The `serving:` section (``ServingConfig``), checked against the workload and the
    /// schedule it will run with: a rank's full batch must fit the per-rank token limit and
    /// DeepEP's dispatch capacity, and the fast path's layers the model's.
    func decodeServing(_ value: YAMLValue?, workload: Workload, model: MoEModel, microBatches: Int, ranks: Int) throws -> ServingConfig? {
        guard let value else { return nil }
        let map = try value.mapping()
        if workload.phase != .decode { throw value.error(.inconsistent, "serving simulates decode steps; workload.phase is prefill") }
        if workload.trace != nil { throw value.error(.inconsistent, "a routing trace fixes every rank's tokens; serving decides them step by step") }
        if workload.microBatchATokens != nil {
            throw value.error(.inconsistent, "serving splits each rank's requests into micro-batches itself; remove workload.micro_batch_a_tokens")
        }
        let seed = UInt64(try map.optional("seed")?.int(in: 0...Int.max, what: "a non-negative integer seed") ?? Int(workload.seed))
        let arrivalsValue = try map.required("arrivals", expected: "a mapping with `process`: poisson, bursts, closed or trace")
        let arrivals = try decodeArrivals(arrivalsValue)
        let requestLimit = try map.optional("requests")?.int(in: 1...100_000_000, what: "a number of requests")
        func lengths(_ key: String, max: Int, default d: Int?) throws -> Distribution {
            guard let v = map.optional(key) else {
                if let d { return .constant(Double(d)) }
                _ = try map.required(key, expected: "a number of tokens or {distribution: ...}")
                return .constant(1)
            }
            let (values, drawn) = try perRankIntegers(v, ranks: 1, range: 1...max, what: "a number of tokens", seed: seed, purpose: 0)
            return drawn ?? .constant(Double(values[0]))
        }
        let isTrace: Bool
        if case .trace = arrivals { isTrace = true } else { isTrace = false }
        if isTrace, let v = map.optional("input_tokens") ?? map.optional("output_tokens") {
            throw v.error(.inconsistent, "a request trace gives each request's input and output tokens")
        }
        let input = try lengths("input_tokens", max: ServingConfig.maxInputTokens, default: isTrace ? 1 : nil)
        let output = try lengths("output_tokens", max: ServingConfig.maxOutputTokens, default: isTrace ? 1 : nil)
        let policy = try decodePolicy(map.optional("policy"))
        let queueing = try map.optional("queueing").map { ServingConfig.Queueing(rawValue: try $0.choice(ServingConfig.Queueing.allCases.map(\.rawValue)))! } ?? .central
        let perRequest = 1 + (workload.draftTokens?.max() ?? 0)
        let capValue = try map.required("max_requests_per_rank", expected: "the most requests a rank decodes at once")
        let cap = try capValue.int(in: 1...(ScenarioLimits.maxTokensPerRank / perRequest), what: "a number of requests")
        if let capacity = workload.maxDispatchTokensPerRank {
            let perMicroBatch = (cap + microBatches - 1) / microBatches * perRequest
            if perMicroBatch > capacity {
                throw capValue.error(
                    .inconsistent,
                    "\(cap) requests of \(perRequest) token\(perRequest == 1 ? "" : "s") each put \(perMicroBatch) tokens in a micro-batch, more than workload.max_dispatch_tokens_per_rank (\(capacity))")
            }
        }
        if ranks * cap * perRequest * model.topK > ScenarioLimits.maxSelectionsPerLayer {
            throw capValue.error(.tooLarge, "\(ranks) ranks of \(cap) requests select more experts per layer than \(ScenarioLimits.maxSelectionsPerLayer)")
        }
        let kvCapacity = try map.optional("kv_capacity_tokens")?.int(in: 1...(1 << 40), what: "KV-cache tokens per rank") ?? (1 << 40)
        let stepsValue = try map.required("steps", expected: "the decode steps to simulate")
        let steps = try stepsValue.int(in: 1...ServingConfig.maxSteps, what: "a number of steps")
        if steps * ranks > ServingConfig.maxRankSteps {
            throw stepsValue.error(
                .tooLarge, "\(steps) steps x \(ranks) ranks keep \(steps * ranks) rank-step rows, more than \(ServingConfig.maxRankSteps): simulate fewer steps")
        }
        let warmValue = map.optional("warmup_steps")
        let warm = try warmValue?.int(in: 0...ServingConfig.maxSteps, what: "a number of steps") ?? 0
        if let warmValue, warm >= steps { throw warmValue.error(.inconsistent, "warmup_steps (\(warm)) leaves none of the \(steps) steps to count") }
        var layers: Int?
        if let v = map.optional("simulated_moe_layers") {
            if case .scalar = v.node, try v.string() == "all" {
                layers = nil
            } else {
                // The fast path extrapolates from the layers between the first and the last,
                // so it needs 3; a model of fewer layers simulates them all.
                let k = try v.int(
                    in: min(3, model.moeLayers)...model.moeLayers,
                    what: "MoE layers to simulate per step (at least 3, the fast path extrapolating from those between the first and the last; or all)")
                layers = k == model.moeLayers ? nil : k
            }
        }
        let counterfactual = try map.optional("counterfactual")?.bool() ?? true
        try map.finish()
        return ServingConfig(
            arrivals: arrivals, requestLimit: requestLimit, inputTokens: input, outputTokens: output, policy: policy, queueing: queueing,
            maxRequestsPerRank: cap, kvCapacityTokens: kvCapacity, steps: steps, warmupSteps: warm, simulatedMoELayers: layers,
            counterfactual: counterfactual, seed: seed)
    }

    func decodeArrivals(_ value: YAMLValue) throws -> ServingConfig.Arrivals {
        let map = try value.mapping()
        let process = try map.required("process", expected: "poisson, bursts, closed or trace").choice(["poisson", "bursts", "closed", "trace"])
        let arrivals: ServingConfig.Arrivals
        switch process {
        case "poisson":
            arrivals = .poisson(ratePerSecond: try map.required("rate_per_s", expected: "requests per second").double(in: 1e-6...1e9, what: "a rate"))
        case "bursts":
            arrivals = .bursts(
                size: try map.required("size", expected: "requests per burst").int(in: 1...10_000_000, what: "a number of requests"),
                intervalMicros: try map.required("interval_us", expected: "microseconds between bursts").double(in: 1e-3...ScenarioLimits.maxMicros, what: "a time"))
        case "closed":
            arrivals = .closedLoop(concurrency: try map.required("concurrency", expected: "requests in the system").int(in: 1...10_000_000, what: "a number of requests"))
        default:
            let fileValue = try map.required("file", expected: "the CSV of arrival_us,input_tokens,output_tokens")
            let name = try fileValue.string()
            let path = name.hasPrefix("/") ? name : baseDirectory + "/" + name
            let text: String
            do {
                text = try Scenario.readText(path: path, expected: "a request trace CSV", maxBytes: Scenario.maxDataFileBytes)
            } catch let error as ScenarioError {
                throw fileValue.error(.unreadableFile, "the request trace \(path) \(error.message)")
            }
            arrivals = .trace(try Self.parseRequestTrace(text, file: path))
        }
        try map.finish()
        return arrivals
    }

    func decodePolicy(_ value: YAMLValue?) throws -> ServingConfig.Policy {
        guard let value else { return .roundRobin }
        if value.isMapping {
            let map = try value.mapping()
            let weights = try map.required("weights", expected: "{requests: W, kv: W}").mapping()
            let r = try weights.optional("requests")?.double(in: 0...1e6, what: "a weight") ?? 0
            let k = try weights.optional("kv")?.double(in: 0...1e6, what: "a weight") ?? 0
            try weights.finish()
            try map.finish()
            if r == 0 && k == 0 { throw value.error(.inconsistent, "weights: give requests or kv a positive weight") }
            return .weighted(requests: r, kv: k)
        }
        switch try value.choice(["round-robin", "random", "least-requests", "least-kv"]) {
        case "random": return .random
        case "least-requests": return .leastRequests
        case "least-kv": return .leastKV
        default: return .roundRobin
        }
    }

    /// Parses a request trace: a header `arrival_us,input_tokens,output_tokens`, then one
    /// request per line, arrivals in non-decreasing order; errors name the file and line.
    static func parseRequestTrace(_ text: String, file: String) throws -> [ServingConfig.TraceRequest] {
        var rows: [ServingConfig.TraceRequest] = []
        var sawHeader = false
        var lineNumber = 0
        // `\r\n` is one Character in Swift: split on every line break, CRLF included.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ message: String) -> ScenarioError {
                ScenarioError(.wrongType, file: file, keyPath: "serving.arrivals.file", line: lineNumber, message: message)
            }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if !sawHeader {
                guard cells == ["arrival_us", "input_tokens", "output_tokens"] else {
                    throw fail("expected the header arrival_us,input_tokens,output_tokens, found \"\(line.prefix(80))\"")
                }
                sawHeader = true
                continue
            }
            guard cells.count == 3 else { throw fail("expected 3 values (arrival_us,input_tokens,output_tokens), found \(cells.count)") }
            guard let arrival = Double(cells[0]), arrival.isFinite, arrival >= 0, arrival <= ScenarioLimits.maxMicros else {
                throw fail("arrival_us \"\(cells[0])\" is not a time from 0 to \(ScenarioLimits.maxMicros) us")
            }
            guard let input = Int(cells[1]), (1...ServingConfig.maxInputTokens).contains(input) else {
                throw fail("input_tokens \"\(cells[1])\" is not an integer from 1 to \(ServingConfig.maxInputTokens)")
            }
            guard let output = Int(cells[2]), (1...ServingConfig.maxOutputTokens).contains(output) else {
                throw fail("output_tokens \"\(cells[2])\" is not an integer from 1 to \(ServingConfig.maxOutputTokens)")
            }
            if let last = rows.last, arrival < last.arrivalMicros {
                throw fail("arrival_us \(cells[0]) is before the previous request's \(last.arrivalMicros): requests must be in arrival order")
            }
            rows.append(ServingConfig.TraceRequest(arrivalMicros: arrival, inputTokens: input, outputTokens: output))
        }
        guard !rows.isEmpty else {
            throw ScenarioError(.wrongType, file: file, keyPath: "serving.arrivals.file", message: "the request trace has no requests (a header, then arrival_us,input_tokens,output_tokens per line)")
        }
        return rows
    }
}
