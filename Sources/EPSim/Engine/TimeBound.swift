import EventCore

extension Simulation {
    /// An upper bound, in microseconds, on the simulated time a run of `scenario` reaches, and
    /// the term that contributes most to it (a cost key and kernel), so that `validate` can
    /// refuse what would pass ``SimTime/horizon`` before anything runs.
    ///
    /// Every rank runs the same program, and every dependency (a stream's order, a RECV
    /// waiting for the SENDs of its operation) goes from an instruction to a later one, so a
    /// step's critical path meets each instruction at most once: a step lasts at most the sum,
    /// over its instructions, of the longest that instruction can take on any rank plus the
    /// longest flight of its operation. Each term takes the largest batch a step can have
    /// (every rank at its largest token count, every selection sent to one rank), the slowest
    /// link with every byte of the operation through it, and every fixed cost at its largest.
    /// Loose, never low.
    public static func simulatedTimeBound(_ scenario: Scenario) -> (micros: Double, dominant: String) {
        simulatedTimeBound(scenario, program: program(of: scenario))
    }

    static func simulatedTimeBound(_ scenario: Scenario, program: Program?) -> (micros: Double, dominant: String) {
        guard let program else { return (0, "") }
        let s = scenario
        let w = s.workload
        let n = Double(s.cluster.ranks)
        let maxTokens: Int
        switch w.tokenDistribution {
        case nil: maxTokens = w.tokensPerRank.max() ?? 0
        case .list(let values)?: maxTokens = values.max() ?? 0
        case .uniform(_, let hi)?: maxTokens = hi
        case .zipf(_, let hi)?: maxTokens = hi
        case .constant(let v)?: maxTokens = Int(min(max(v.rounded(.up), 0), Double(ScenarioLimits.maxTokensPerRank)))
        default: maxTokens = ScenarioLimits.maxTokensPerRank
        }
        // Requests times the tokens each brings (multi-token prediction), within the token limit.
        let tokens = min(maxTokens.multipliedReportingOverflow(by: 1 + (w.draftTokens?.max() ?? 0)).partialValue, ScenarioLimits.maxTokensPerRank)
        let selections = Double(tokens) * n * Double(s.model.topK)
        var work = ComputeWork()
        work.tokens = tokens
        work.tokensA = tokens
        work.tokensTotal = tokens
        work.received = Int(min(selections, Double(Int32.max)))
        work.receivedA = work.received
        work.receivedTotal = work.received
        work.kvLength = w.kvLength.max() ?? 0
        work.wholeBatch = true
        work.expertTokens = [Int32(clamping: work.received)]
        if s.costs.expertGEMM == .padded, let c = w.maxDispatchTokensPerRank {
            // Every local expert computes its whole buffer slice; a rank holds at most all experts.
            work.expertTokens = Array(repeating: 0, count: Dictionary(grouping: s.model.placement, by: { $0 }).values.map(\.count).max() ?? 1)
            work.capacityRows = c * s.cluster.ranks
        }
        let cost = CostModel(costs: s.costs, model: s.model, phase: w.phase)
        func largest(_ c: ComputeCost, _ kind: KernelKind) -> Double {
            switch c {
            case .wholeBatch(let d): return (d.max() ?? .zero).micros
            case .perMicroBatch(let a, let b): return (a.max() ?? .zero).micros + (b.max() ?? .zero).micros
            case .table(let points):
                let x = Double(kind == .mlp ? work.mlpRows : tokens)
                return max(points.map(\.micros).max() ?? 0, CostModel.interpolate(points, at: x))
            case .roofline: return cost.roofline(kind, work: work).micros
            }
        }
        func seconds(_ bytes: Double, _ gbps: Double) -> Double { gbps.isInfinite ? 0 : bytes / (gbps * 1e3) }
        let net = s.network
        let slowest = min(net.nvlink.bandwidthGBps, net.rdma.bandwidthGBps, net.selfCopyGBps)
        let latency = max(net.nvlink.latency, net.rdma.latency).micros
        var total = 0.0
        var dominant = (0.0, "")
        for instr in program.instructions {
            let dispatch = instr.kind.isDispatchSide
            let bytes = selections * Double(dispatch ? s.model.dispatchMessageBytes : s.model.combineMessageBytes)
            var term = s.costs.launchGap.micros
            var key: String
            switch instr.kind {
            case .attn0: (term, key) = (term + largest(s.costs.attn0, .attn0), "costs.attn0_us")
            case .attn1: (term, key) = (term + largest(s.costs.attn1, .attn1), "costs.attn1_us")
            case .shared: (term, key) = (term + largest(s.costs.shared, .shared), "costs.shared_us")
            case .mlp: (term, key) = (term + largest(s.costs.gemm, .mlp), "costs.gemm_us")
            case .dense: (term, key) = (term + largest(s.costs.denseMLP, .dense), "costs.dense_mlp_us")
            case .barrier: (term, key) = (term + 3 * latency, "network latency")
            default:
                let send = dispatch ? s.costs.dispatchSend : s.costs.combineSend
                let recv = dispatch ? s.costs.dispatchRecv : s.costs.combineRecv
                let name = dispatch ? "dispatch" : "combine"
                if instr.kind.sends {
                    term += (send.fixed.max() ?? .zero).micros + send.perMessage.micros * selections
                        + seconds(bytes, slowest) + seconds(bytes, send.pairGBps)
                    // The flight: the fence's round trip, the latency, every byte through one port.
                    term += 3 * latency + seconds(bytes, slowest)
                }
                if instr.kind.receives { term += (recv.fixed.max() ?? .zero).micros + seconds(bytes, recv.copyGBps) + seconds(bytes, recv.pairGBps) }
                if instr.notifyOp >= 0 { term += 3 * latency }
                key = "costs.\(name)_\(instr.kind.sends ? "send" : "recv") (per message and fixed costs, with the links)"
            }
            total += term
            if term > dominant.0 { dominant = (term, "\(key), \(instr.label)") }
        }
        if let host = s.host {
            // The host can delay a step by all its launches, its gap and its largest jitter.
            let term = host.largestStepMicros(instructions: program.instructions.count)
            total += term
            if term > dominant.0 { dominant = (term, "host (launches, step_gap_us, jitter_us)") }
        }
        return (total * Double(s.steps), dominant.1)
    }

    /// Throws ``SimulationError`` (`time-overflow`) when ``simulatedTimeBound(_:)`` reaches
    /// ``SimTime/horizon``: the run could pass the most simulated time EPSim represents.
    public static func checkTimeBound(_ scenario: Scenario) throws {
        try checkTimeBound(scenario, program: program(of: scenario))
    }

    static func checkTimeBound(_ scenario: Scenario, program: Program?) throws {
        let (bound, dominant) = simulatedTimeBound(scenario, program: program)
        guard bound >= SimTime.horizon.micros else { return }
        throw SimulationError(
            code: .timeOverflow,
            message: String(
                format: "the run could reach %.3g us of simulated time (bounded by its largest durations), past the %.0f days EPSim represents; the largest term: %@ (x %d steps)",
                bound, SimTime.horizon.micros / 86_400e6, dominant, scenario.steps))
    }
}
