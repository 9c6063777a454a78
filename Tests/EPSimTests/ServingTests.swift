import EventCore
import Foundation
import Testing

@testable import EPSim

/// Serving runs (``ServingLoop``) against closed cases, Little's law, the fast path's
/// documented error, and determinism.
@Suite("Serving")
struct ServingTests {
    /// Fixed compute costs, an ideal network and balanced routing on 4 ranks (one per node).
    static func fixedScenario(serving: String, ranks: Int = 4) throws -> Scenario {
        let yaml = """
            name: serve-test
            cluster: {ranks: \(ranks), gpus_per_node: 1}
            model: {experts: 16, top_k: 4, hidden: 7168, moe_layers: 2}
            workload: {routing: balanced, seed: 3}
            schedule: none
            network: {model: ideal}
            costs: {attn0_us: 30, attn1_us: 60, shared_us: 15, gemm_us: 50}
            serving:
            \(serving.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """
        return try Scenario.parse(yaml: yaml, file: "serve-test.yaml")
    }

    /// DeepSeek-V3's roofline on H800 (attention grows with the KV cache), `layers` MoE layers.
    static func rooflineScenario(
        serving: String, ranks: Int = 4, gpusPerNode: Int = 1, layers: Int = 2, schedule: String = "none", network: String = "ideal", costs: String = "{}"
    ) throws -> Scenario {
        let yaml = """
            name: serve-roofline
            hardware: h800
            cluster: {ranks: \(ranks), gpus_per_node: \(gpusPerNode)}
            model: {preset: deepseek-v3, moe_layers: \(layers), dense_layers: 0}
            workload: {routing: \(network == "ideal" ? "balanced" : "uniform"), seed: 5}
            schedule: \(schedule)
            network: {model: \(network)}
            costs: \(costs)
            serving:
            \(serving.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """
        return try Scenario.parse(yaml: yaml, file: "serve-roofline.yaml")
    }

    @Test("constant lengths, a closed loop, round-robin, equal KV: every step identical and balanced")
    func closedBalanced() throws {
        let s = try Self.fixedScenario(
            serving: """
                arrivals: {process: closed, concurrency: 8}
                input_tokens: 1000
                output_tokens: 5
                max_requests_per_rank: 2
                steps: 30
                """)
        let r = try ServingLoop(scenario: s).run()
        #expect(r.steps.count == 30)
        let first = r.steps[0].duration
        #expect(first > .zero)
        for step in r.steps {
            #expect(step.duration == first, "step \(step.step)")
            #expect(step.balanced == first, "step \(step.step): the balanced counterfactual is the step itself")
            #expect(step.requests == 8)
        }
        for row in r.rankSteps { #expect(row.requests == 2) }
        #expect(r.summary.imbalanceShare == 0)
        // Every request decodes its 5 tokens in 5 steps: TPOT is the step time exactly.
        #expect(r.summary.tpotP99Micros == first.micros)
        // 8 requests finish every 5 steps.
        #expect(r.summary.requestsFinished == 8 * 6)
    }

    @Test("one long request pinned to rank 0: its attention sets the step and the others' wait grows by the difference")
    func pinnedLongRequest() throws {
        func run(longKV: Int) throws -> ServingResult {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-serve-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let csv = dir.appendingPathComponent("requests.csv")
            // Round-robin puts request i on rank i mod 4: 32 requests per rank (balanced
            // routing then loads every rank's experts alike), request 0 the long one.
            let rows = (0..<128).map { "0,\($0 == 0 ? longKV : 1000),6" }
            try ("arrival_us,input_tokens,output_tokens\n" + rows.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
            return try ServingLoop(scenario: Self.rooflineScenario(
                serving: """
                    arrivals: {process: trace, file: \(csv.path)}
                    max_requests_per_rank: 32
                    steps: 6
                    """, costs: "{shared_us: 0}")).run()
        }
        let long = try run(longKV: 200_000)
        let base = try run(longKV: 1000)
        #expect(long.steps.count == 6)
        for step in 0..<6 {
            let l = Array(long.rankSteps[(step * 4)..<(step * 4 + 4)])
            let b = Array(base.rankSteps[(step * 4)..<(step * 4 + 4)])
            let difference = l[0].attention - l[1].attention
            #expect(difference > SimTime(micros: 10), "the long KV cache must cost attention time")
            for r in 1..<4 {
                // No shared expert between SEND-D and RECV-D (shared_us: 0): each layer's
                // dispatch waits for rank 0's whole lateness, and the combine realigns the ranks.
                let extra = l[r].dispatchWait - b[r].dispatchWait
                #expect(abs(extra.picos - difference.picos) <= 2_000, "step \(step), rank \(r): extra wait \(extra) against \(difference)")
                #expect(l[r].combineWait == b[r].combineWait)
                #expect(l[r].attention == b[r].attention)
            }
            #expect(l[0].dispatchWait <= b[0].dispatchWait, "the late rank waits for no one")
            #expect(l.map(\.end).max()! - l.map(\.end).min()! <= SimTime(picos: 2_000), "every rank ends the step together")
            #expect(l[0].end - b[0].end >= difference, "the step is later by the difference (and by those of the steps before)")
        }
        #expect(long.summary.imbalanceShare! > 0)
    }

    @Test("Little's law: the time-average number in the system is the arrival rate times the mean time in it, within one step at each end")
    func littlesLaw() throws {
        let s = try Self.fixedScenario(
            serving: """
                arrivals: {process: poisson, rate_per_s: 20000}
                requests: 600
                input_tokens: {distribution: uniform, min: 500, max: 3000}
                output_tokens: {distribution: uniform, min: 5, max: 40}
                max_requests_per_rank: 16
                steps: 5000
                seed: 11
                """)
        let r = try ServingLoop(scenario: s).run()
        #expect(r.drained, "every request finishes and none comes: the run ends early")
        #expect(r.requests.count == 600)
        #expect(r.requests.allSatisfy { $0.finish != nil })
        #expect(r.steps.contains { $0.queued > 0 }, "the case must queue requests")
        let horizon = r.steps.last!.end
        // The scheduler's own counts at each step's start, held until the next step starts.
        var area = 0.0
        var longest = SimTime.zero
        for (i, step) in r.steps.enumerated() {
            let next = i + 1 < r.steps.count ? r.steps[i + 1].start : step.end
            area += Double(step.queued + step.requests) * (next - step.start).micros
            longest = max(longest, next - step.start)
        }
        let sampledL = area / horizon.micros
        let lambda = Double(r.requests.count) / horizon.micros
        let meanW = r.requests.map { ($0.finish! - $0.request.arrival).micros }.reduce(0, +) / Double(r.requests.count)
        #expect(abs(sampledL - lambda * meanW) <= lambda * 2 * longest.micros, "L = \(sampledL), lambda W = \(lambda * meanW)")
        #expect(sampledL > 10, "the system must hold many requests for the check to mean something")
    }

    @Test("the fast path (4 of 12 MoE layers simulated) is within 1% of every layer simulated, step time and TPOT p99")
    func fastPathError() throws {
        func run(_ layers: String) throws -> ServingSummary {
            try ServingLoop(scenario: Self.rooflineScenario(
                serving: """
                    arrivals: {process: poisson, rate_per_s: 600}
                    input_tokens: {distribution: lognormal, mu: 7.6, sigma: 0.8}
                    output_tokens: {distribution: uniform, min: 5, max: 30}
                    max_requests_per_rank: 32
                    steps: 80
                    warmup_steps: 20
                    simulated_moe_layers: \(layers)
                    counterfactual: false
                    """, ranks: 8, gpusPerNode: 4, layers: 12, schedule: "deepseek-decode", network: "ports")).run().summary
        }
        let fast = try run("4")
        let full = try run("all")
        #expect(fast.simulatedMoELayers == 4 && full.simulatedMoELayers == 12)
        let (fastStep, fullStep) = (try #require(fast.meanStepMicros), try #require(full.meanStepMicros))
        let (fastTPOT, fullTPOT) = (try #require(fast.tpotP99Micros), try #require(full.tpotP99Micros))
        #expect(abs(fastStep / fullStep - 1) <= 0.01, "\(fastStep) vs \(fullStep)")
        #expect(abs(fastTPOT / fullTPOT - 1) <= 0.01, "\(fastTPOT) vs \(fullTPOT)")
    }

    @Test("a run stopped during warm-up has no figures: nil in the summary, null in its JSON, never 0")
    func emptySets() throws {
        let s = try Self.fixedScenario(
            serving: """
                arrivals: {process: closed, concurrency: 8}
                input_tokens: 1000
                output_tokens: 5
                max_requests_per_rank: 2
                steps: 30
                warmup_steps: 10
                """)
        var asked = 0
        let r = try ServingLoop(scenario: s).run(shouldStop: {
            asked += 1
            return asked > 3
        })
        let summary = r.summary
        #expect(r.stopped && summary.steps == 3 && summary.countedSteps == 0)
        #expect(summary.meanStepMicros == nil && summary.tokensPerSecondPerGPU == nil && summary.imbalanceShare == nil && summary.meanBatch == nil)
        #expect(summary.tpotP99Micros == nil && summary.itlP99Micros == nil && summary.queueP99Micros == nil)
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(summary)) as? [String: Any])
        for key in ["mean_step_us", "tpot_p99_us", "itl_p50_us", "queue_p99_us", "tokens_per_s_per_gpu", "kv_max_over_mean"] {
            #expect(json[key] is NSNull, "\(key): \(String(describing: json[key]))")
        }
        #expect(json["steps"] as? Int == 3)
    }

    @Test("an overload shows in the queueing figures: requests still waiting count with their wait so far")
    func overloadQueueing() throws {
        // 4 ranks of one request each, none finishing within the run, arrivals every 10 us.
        let s = try Self.fixedScenario(
            serving: """
                arrivals: {process: poisson, rate_per_s: 100000}
                input_tokens: 100
                output_tokens: 1000
                max_requests_per_rank: 1
                steps: 20
                """)
        let r = try ServingLoop(scenario: s).run()
        let summary = r.summary
        let admitted = r.requests.filter { $0.admittedStep != nil }
        let waiting = r.requests.filter { $0.admittedStep == nil }
        #expect(admitted.count == 4 && summary.requestsWaiting == waiting.count && waiting.count > 500)
        // Over the admitted requests alone, queueing would be below one step; the waiting
        // ones' waits spread over the run, the longest about the whole run.
        let runEnd = r.steps.last!.end
        let longest = (runEnd - waiting.map(\.request.arrival).min()!).micros
        let p99 = try #require(summary.queueP99Micros)
        let p50 = try #require(summary.queueP50Micros)
        #expect(p99 <= longest && p99 >= 0.95 * longest, "\(p99) of \(longest)")
        #expect(p50 >= 0.3 * runEnd.micros && p50 <= 0.7 * runEnd.micros, "\(p50) of \(runEnd.micros)")
        #expect(admitted.allSatisfy { $0.queueing! < r.steps[1].end })
    }

    @Test("arrivals that outrun the ranks for good stop the run with budget-exceeded, not an unbounded queue")
    func runawayQueue() throws {
        let s = try Self.fixedScenario(
            serving: """
                arrivals: {process: poisson, rate_per_s: 1000000000}
                input_tokens: 100
                output_tokens: 1000
                max_requests_per_rank: 1
                steps: 1000
                """)
        #expect {
            _ = try ServingLoop(scenario: s).run()
        } throws: { e in
            (e as? SimulationError)?.code == .budgetExceeded && "\(e)".contains("outrun")
        }
        // A closed loop larger than the queue may hold stops the same way, and at once.
        let closed = try Self.fixedScenario(
            serving: """
                arrivals: {process: closed, concurrency: 1500000}
                input_tokens: 100
                output_tokens: 1000
                max_requests_per_rank: 1
                steps: 10
                """)
        #expect(throws: SimulationError.self) { _ = try ServingLoop(scenario: closed).run() }
        // Every request larger than a rank's KV capacity, arrivals without end: stopped, not a
        // queue of rejections growing until memory runs out.
        let rejected = try Self.fixedScenario(
            serving: """
                arrivals: {process: closed, concurrency: 4}
                input_tokens: 100
                output_tokens: 10
                max_requests_per_rank: 2
                kv_capacity_tokens: 10
                steps: 5
                """)
        #expect(throws: SimulationError.self) { _ = try ServingLoop(scenario: rejected).run() }
    }

    @Test("a request trace with CRLF line ends reads as with LF; a batch that fits the dispatch capacity is accepted whatever tokens_per_rank says")
    func crlfAndCapacity() throws {
        let rows = try ScenarioDecoder.parseRequestTrace("arrival_us,input_tokens,output_tokens\r\n0,1000,20\r\n100,2000,30\r\n", file: "t.csv")
        #expect(rows.map(\.inputTokens) == [1000, 2000])
        let s = try Scenario.parse(
            yaml: """
                name: mtp
                cluster: {ranks: 4, gpus_per_node: 1}
                model: {experts: 16, top_k: 4, hidden: 7168, moe_layers: 2}
                workload: {routing: balanced, draft_tokens: 3, max_dispatch_tokens_per_rank: 128}
                schedule: deepseek-decode
                serving:
                  arrivals: {process: closed, concurrency: 64}
                  input_tokens: 100
                  output_tokens: 10
                  max_requests_per_rank: 32
                  steps: 3
                """, file: "mtp.yaml")
        try Simulation.checkBudget(s, options: SimulationOptions(timeline: .summary))
        #expect(try ServingLoop(scenario: s).run().steps.count == 3)
    }

    @Test("a serving run is a function of its seed")
    func determinism() throws {
        func run(_ seed: Int) throws -> ServingResult {
            try ServingLoop(scenario: Self.fixedScenario(
                serving: """
                    arrivals: {process: poisson, rate_per_s: 20000}
                    input_tokens: {distribution: lognormal, mu: 7, sigma: 1}
                    output_tokens: {distribution: uniform, min: 2, max: 20}
                    policy: random
                    max_requests_per_rank: 8
                    steps: 60
                    seed: \(seed)
                    """)).run()
        }
        let a = try run(1)
        let b = try run(1)
        let c = try run(2)
        #expect(a.steps == b.steps && a.rankSteps == b.rankSteps && a.requests == b.requests)
        #expect(a.requests != c.requests)
    }

    @Test("least-kv sends a request to the rank with the fewest KV tokens; round-robin cycles; per-rank queues assign on arrival")
    func policies() throws {
        func scheduler(_ policy: ServingConfig.Policy, queueing: ServingConfig.Queueing = .central) -> ServingScheduler {
            let rows = [(0.0, 5000), (0.0, 100), (0.0, 3000), (0.0, 200), (1.0, 50), (1.0, 50)].map {
                ServingConfig.TraceRequest(arrivalMicros: $0.0, inputTokens: $0.1, outputTokens: 10)
            }
            let config = ServingConfig(
                arrivals: .trace(rows), inputTokens: .constant(1), outputTokens: .constant(1), policy: policy, queueing: queueing,
                maxRequestsPerRank: 4, steps: 10)
            return ServingScheduler(config: config, ranks: 3, queryTokens: [1, 1, 1], acceptanceRate: 0)
        }
        var kv = scheduler(.leastKV)
        kv.arrive(until: .zero)
        kv.admit(step: 0, rankStarts: [.zero, .zero, .zero])
        // 5000 -> 0; 100 -> 1; 3000 -> 2; 200 -> 1 (100 is the least).
        #expect(kv.records.map(\.rank) == [0, 1, 2, 1])
        kv.arrive(until: SimTime(micros: 1))
        kv.admit(step: 1, rankStarts: Array(repeating: SimTime(micros: 1), count: 3))
        #expect(kv.records.map(\.rank) == [0, 1, 2, 1, 1, 1])
        var rr = scheduler(.roundRobin)
        rr.arrive(until: SimTime(micros: 1))
        rr.admit(step: 0, rankStarts: [.zero, .zero, .zero])
        #expect(rr.records.map(\.rank) == [0, 1, 2, 0, 1, 2])
        var perRank = scheduler(.leastRequests, queueing: .perRank)
        perRank.arrive(until: .zero)
        #expect(perRank.records.map(\.rank) == [0, 1, 2, 0], "assigned on arrival, counting queued requests")
        #expect(perRank.activeRequests == 0 && perRank.queuedRequests == 4)
    }

    @Test("the weighted policy scores each load over its mean: kv alone is least-kv, requests alone least-requests, a mix neither")
    func weightedPolicy() throws {
        // Lognormal prompts, Poisson arrivals, 8 ranks: each weighted run makes the same
        // choices as the policy it reduces to, under the default (unbounded) KV capacity.
        func ranks(_ policy: String) throws -> [Int] {
            let s = try Self.fixedScenario(
                serving: """
                    arrivals: {process: poisson, rate_per_s: 5000}
                    input_tokens: {distribution: lognormal, mu: 7, sigma: 1}
                    output_tokens: {distribution: uniform, min: 2, max: 12}
                    max_requests_per_rank: 6
                    policy: \(policy)
                    steps: 120
                    counterfactual: false
                    """, ranks: 8)
            return try ServingLoop(scenario: s).run().requests.map(\.rank)
        }
        let kv = try ranks("least-kv")
        let requests = try ranks("least-requests")
        #expect(kv.count > 100 && kv != requests, "\(kv.count) requests")
        #expect(try ranks("{weights: {kv: 1}}") == kv)
        #expect(try ranks("{weights: {requests: 2}}") == requests)
        // By hand: requests 1, 3, 2 (mean 2) and KV 1000, 30, 200 (mean 410). Scores with
        // weights 1 and 1: 0.5 + 2.44, 1.5 + 0.07, 1 + 0.49: rank 2, where least-requests
        // picks rank 0 and least-kv rank 1.
        let config = ServingConfig(
            arrivals: .closedLoop(concurrency: 1), inputTokens: .constant(1), outputTokens: .constant(1), policy: .weighted(requests: 1, kv: 1),
            maxRequestsPerRank: 8, steps: 1)
        var scheduler = ServingScheduler(config: config, ranks: 3, queryTokens: [1, 1, 1], acceptanceRate: 0)
        let one = ServingScheduler.Active(record: 0, kv: 0, reserved: 0, lastToken: .zero)
        scheduler.active = [[one], [one, one, one], [one, one]]
        scheduler.kvInUse = [1000, 30, 200]
        #expect(scheduler.choose(0, among: [0, 1, 2], countingQueued: false) == 2)
        #expect(scheduler.choose(0, among: [0, 1], countingQueued: false) == 1)
    }

    @Test("the serving section is checked with key paths: missing steps, too few fast-path layers, a capacity the batch overflows, a bad trace line")
    func refusals() throws {
        func error(_ serving: String, workload: String = "{routing: balanced}") -> ScenarioError? {
            let yaml = """
                name: bad
                cluster: {ranks: 4, gpus_per_node: 1}
                model: {experts: 16, top_k: 4, hidden: 7168, moe_layers: 8}
                workload: \(workload)
                serving:
                \(serving.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
                """
            do {
                _ = try Scenario.parse(yaml: yaml, file: "bad.yaml")
                return nil
            } catch let e as ScenarioError {
                return e
            } catch {
                return nil
            }
        }
        let base = "arrivals: {process: closed, concurrency: 4}\ninput_tokens: 100\noutput_tokens: 10\nmax_requests_per_rank: 8"
        let missing = error(base)
        #expect(missing?.code == .missingKey && missing?.keyPath == "serving.steps")
        let layers = error(base + "\nsteps: 10\nsimulated_moe_layers: 2")
        #expect(layers?.code == .outOfRange && layers?.keyPath == "serving.simulated_moe_layers")
        #expect(layers?.message.contains("3...8") == true, "the range it accepts, not 1...8: \(layers?.message ?? "")")
        let capacity = error(base + "\nsteps: 10", workload: "{routing: balanced, max_dispatch_tokens_per_rank: 4}")
        #expect(capacity?.code == .inconsistent && capacity?.keyPath == "serving.max_requests_per_rank")
        let policy = error(base + "\nsteps: 10\npolicy: fastest")
        #expect(policy?.keyPath == "serving.policy")
        #expect(throws: ScenarioError.self) {
            _ = try ScenarioDecoder.parseRequestTrace("arrival_us,input_tokens,output_tokens\n0,100,5\n3,abc,5\n", file: "t.csv")
        }
        do {
            _ = try ScenarioDecoder.parseRequestTrace("arrival_us,input_tokens,output_tokens\n5,100,5\n3,100,5\n", file: "t.csv")
        } catch let e as ScenarioError {
            #expect(e.line == 3 && e.message.contains("arrival order"))
        }
    }
}
