import EventCore
import Testing

@testable import EPSim

/// Issue 12's mechanisms on two ranks, each against a closed form or an equivalent run:
/// multi-token prediction, DeepEP's dispatch capacity and the host that launches kernels.
@Suite("Decode realism: MTP, capacity, host")
struct DecodeRealismTests {
    static let base = """
        name: t
        cluster: {ranks: 2, gpus_per_node: 2}
        model: {experts: 16, top_k: 8}
        network: {model: ideal}
        costs: {attn0_us: 30, attn1_us: 60, shared_us: 15, gemm_us: 50}

        """

    static func run(_ yaml: String) throws -> RunResult { try Simulation.run(try scenario(base + yaml)) }

    // MARK: Multi-token prediction

    @Test("d draft tokens multiply the dispatch and combine messages by 1 + d", arguments: [1, 2, 3])
    func draftTokensMultiplyBytes(d: Int) throws {
        let plain = try Self.run("workload: {tokens_per_rank: [16, 8]}\n")
        let mtp = try Self.run("workload: {tokens_per_rank: [16, 8], draft_tokens: \(d)}\n")
        #expect(mtp.messageCount == plain.messageCount * Int64(1 + d))
        for r in 0..<2 {
            let sent = { (x: RunResult) in x.kernels.filter { $0.rank == r && $0.kind.sends }.map(\.bytesOut).reduce(0, +) }
            #expect(sent(mtp) == sent(plain) * Int64(1 + d))
            #expect(mtp.rankStep(rank: r, step: 0).tokens == [16, 8][r] * (1 + d))
        }
    }

    @Test("decode attention reads each request's KV cache once, whatever its query tokens")
    func attentionReadsCacheOncePerRequest() throws {
        let s = try scenario("hardware: h800\ncluster: {ranks: 8}\nmodel: {preset: deepseek-v3}\n")
        let cost = CostModel(costs: s.costs, model: s.model)
        for (requests, q) in [(64, 2), (32, 4), (128, 2)] {
            var w = ComputeWork()
            w.tokens = requests * q
            w.kvLength = 4096
            w.requests = requests
            let (flops, bytes, core) = cost.rooflineWork(.attn1, work: w)
            let t = Double(requests * q)
            let out: Double = 128 * 128 * 7168 + 512 * 128 * 128
            let gate: Double = 7168 * 256
            #expect(core == 2 * t * 4096 * 128 * (512 + 64 + 512))
            #expect(flops == core + 2 * t * (out + gate))
            // The cache of `requests` requests (not tokens), BF16, plus weights and activations.
            #expect(bytes == Double(requests) * 4096 * 576 * 2 + out + gate * 2 + t * 7168 * 2)
        }
    }

    @Test("accepted tokens per second per GPU: requests x (1 + p + ... + p^d) over ranks and the makespan")
    func acceptedThroughput() throws {
        let r = try Self.run("workload: {tokens_per_rank: [10, 6], draft_tokens: 2, acceptance_rate: 0.5}\nsteps: 3\n")
        let perRequest = 1 + 0.5 + 0.25
        #expect(r.acceptedTokens == 3 * 16 * perRequest)
        let expected = 3 * 16 * perRequest / (r.makespan.micros * 1e-6) / 2
        #expect(abs(r.acceptedTokensPerSecondPerGPU! - expected) < 1e-9 * expected)
        let plain = try Self.run("workload: {tokens_per_rank: [10, 6]}\n")
        #expect(plain.acceptedTokens == 16, "without MTP a request keeps one token")
    }

    @Test("the micro-batch split keeps whole requests: A is the first ceil(R/2) requests")
    func splitByRequests() throws {
        let s = try scenario(Self.base + "workload: {tokens_per_rank: [5, 4], draft_tokens: 1}\nschedule: deepseek-decode\n")
        let plan = s.workload.plan(step: 0)
        #expect(plan.tokenRange(rank: 0, microBatch: .a, of: 2) == 0..<6)
        #expect(plan.tokenRange(rank: 0, microBatch: .b, of: 2) == 6..<10)
        #expect(plan.tokenRange(rank: 1, microBatch: .a, of: 2) == 0..<4)
    }

    @Test(
        "malformed MTP keys are refused with the key path",
        arguments: [
            ("workload: {draft_tokens: 16}", "workload.draft_tokens"),
            ("workload: {draft_tokens: -1}", "workload.draft_tokens"),
            ("workload: {draft_tokens: 1, phase: prefill}", "workload.draft_tokens"),
            ("workload: {acceptance_rate: 0.9}", "workload.acceptance_rate"),
            ("workload: {draft_tokens: 1, acceptance_rate: 1.5}", "workload.acceptance_rate"),
            ("workload: {tokens_per_rank: 8, draft_tokens: 1, micro_batch_a_tokens: 3}", "workload.micro_batch_a_tokens"),
        ])
    func malformedMTP(entry: String, path: String) {
        do {
            _ = try scenario(Self.base + entry + "\n")
            Issue.record("accepted: \(entry)")
        } catch {
            #expect("\(error)".contains(path), "\(error)")
        }
    }

    // MARK: Dispatch capacity

    @Test("a batch above max_dispatch_tokens_per_rank is refused per micro-batch, naming the key")
    func capacityRefused() throws {
        #expect(throws: ScenarioError.self) { try scenario(Self.base + "workload: {tokens_per_rank: [64, 65], max_dispatch_tokens_per_rank: 64}\n") }
        // Two micro-batches each dispatch half: 128 tokens fit a capacity of 64.
        let tbo = try scenario(Self.base + "workload: {tokens_per_rank: 128, max_dispatch_tokens_per_rank: 64}\nschedule: deepseek-decode\n")
        #expect(throws: Never.self) { try Simulation.run(tbo) }
        // Without overlap the same batch does not fit: validate and run refuse it.
        var one = tbo
        try one.setSchedule(ScheduleSpec.preset("none")!)
        #expect(throws: SimulationError.self) { try Simulation.checkBudget(one, options: .init()) }
        do {
            _ = try scenario(Self.base + "workload: {tokens_per_rank: 8, draft_tokens: 1, max_dispatch_tokens_per_rank: 14}\n")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("workload.max_dispatch_tokens_per_rank") && "\(error)".contains("16 tokens"), "\(error)")
        }
    }

    @Test("batches drawn per step are clamped to the capacity")
    func drawsClamped() throws {
        let s = try scenario(
            Self.base
                + "workload: {tokens_per_rank: {distribution: uniform, min: 0, max: 1000}, redraw_tokens: true, draft_tokens: 1, max_dispatch_tokens_per_rank: 40}\nschedule: deepseek-decode\nsteps: 30\n"
        )
        var sawCap = false
        for step in 0..<30 {
            let plan = s.workload.plan(step: step)
            for r in 0..<2 {
                for mb in [MicroBatch.a, .b] { #expect(plan.tokenRange(rank: r, microBatch: mb, of: 2).count <= 40) }
                sawCap = sawCap || plan.tokens[r] == 80
            }
        }
        #expect(sawCap, "draws above the cap land on it")
        #expect(throws: Never.self) { try Simulation.run(s, options: .init(timeline: .summary)) }
    }

    @Test("a step source's plan above the capacity stops the run with capacity-exceeded")
    func sourceAboveCapacity() throws {
        struct Big: StepSource {
            func plan(step: Int, at time: SimTime) -> StepPlan { StepPlan(step: step, tokens: [8, step == 1 ? 99 : 8], kvLength: [0, 0]) }
            func rankFinished(rank: RankID, step: Int, at time: SimTime) {}
        }
        let s = try scenario(Self.base + "workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 16}\nsteps: 2\n")
        do {
            _ = try Simulation.run(s, source: Big())
            Issue.record("ran")
        } catch let e as SimulationError {
            #expect(e.code == .capacityExceeded && e.message.contains("rank 1"), "\(e)")
        }
    }

    // MARK: The host

    @Test("a host's launch jitter on one rank turns into the others' RECV wait exactly as a late attention does", arguments: [5.0, 20.0, 73.25])
    func jitterIsLateAttention(x: Double) throws {
        let jitter = try Self.run("workload: {tokens_per_rank: [32, 32]}\nhost: {mode: graph, graph_launch_us: 0, jitter_us: [0, \(x)]}\n")
        let late = try scenario(Self.base.replacingOccurrences(of: "attn0_us: 30", with: "attn0_us: [30, \(30 + x)]") + "workload: {tokens_per_rank: [32, 32]}\n")
        let lateRun = try Simulation.run(late)
        let wait = { (r: RunResult, rank: Int32) in r.kernels.first { $0.rank == rank && $0.kind == .dispatch }!.wait }
        #expect(wait(jitter, 0) == wait(lateRun, 0))
        #expect(jitter.stepLatency == lateRun.stepLatency)
        #expect(jitter.rankStep(rank: 1, step: 0).launchGaps == .us(x), "the jittered rank idles before its first kernel")
    }

    @Test("eager launches gate a host-bound rank at (i + 1) x launch_us; graph replay removes the per-kernel cost")
    func eagerAndGraph() throws {
        let plain = try Self.run("workload: {tokens_per_rank: [32, 32]}\n")
        // 6 kernels (ATTN0 ATTN1 SHARED DISPATCH MLP COMBINE), each shorter than 100 us: kernel
        // i starts at its launch, (i + 1) x 100 us, and the step ends at the last one's end.
        let eager = try Self.run("workload: {tokens_per_rank: [32, 32]}\nhost: {mode: eager, launch_us: 100}\n")
        let combine = plain.kernels.first { $0.rank == 0 && $0.kind == .combine }!
        let eagerCombine = eager.kernels.first { $0.rank == 0 && $0.kind == .combine }!
        #expect(eagerCombine.start == .us(600))
        for (i, k) in eager.kernels.filter({ $0.rank == 0 }).enumerated() { #expect(k.start == .us(Double(100 * (i + 1))), "\(k.kind)") }
        #expect(eagerCombine.duration >= combine.duration - (combine.wait))
        let graph = try Self.run("workload: {tokens_per_rank: [32, 32]}\nhost: {mode: graph, graph_launch_us: 12.5}\n")
        #expect(graph.stepLatency == plain.stepLatency + .us(12.5))
    }

    @Test("the host waits for the GPU between steps (step gap exposed) unless it schedules ahead")
    func stepGap() throws {
        let plain = try Self.run("workload: {tokens_per_rank: [32, 32]}\nsteps: 3\n")
        let waits = try Self.run("workload: {tokens_per_rank: [32, 32]}\nsteps: 3\nhost: {mode: graph, graph_launch_us: 10, step_gap_us: 40}\n")
        let ahead = try Self.run("workload: {tokens_per_rank: [32, 32]}\nsteps: 3\nhost: {mode: graph, graph_launch_us: 10, step_gap_us: 40, waits_for_gpu: false}\n")
        let step = plain.stepLatencies[0]
        #expect(waits.stepLatencies == [step + .us(10), step + .us(50), step + .us(50)])
        // Ahead: the host is done with step s+1's launch long before the GPU ends step s.
        #expect(ahead.stepLatencies == [step + .us(10), step, step])
        #expect(waits.makespan == plain.makespan + .us(110))
    }

    @Test("a wake-up after an idle GPU delays that rank's step like a late attention; below the idle threshold nothing")
    func wakeAfterIdle() throws {
        let plain = try Self.run("workload: {tokens_per_rank: [32, 32]}\nsteps: 2\nhost: {mode: graph, graph_launch_us: 0, step_gap_us: 20000}\n")
        let woken = try Self.run(
            "workload: {tokens_per_rank: [32, 32]}\nsteps: 2\nhost: {mode: graph, graph_launch_us: 0, step_gap_us: 20000, wake_us: [0, 100]}\n")
        let short = try Self.run(
            "workload: {tokens_per_rank: [32, 32]}\nsteps: 2\nhost: {mode: graph, graph_launch_us: 0, step_gap_us: 5000, wake_us: [0, 100]}\n")
        let shortPlain = try Self.run("workload: {tokens_per_rank: [32, 32]}\nsteps: 2\nhost: {mode: graph, graph_launch_us: 0, step_gap_us: 5000}\n")
        let dispatchWait = { (r: RunResult, step: Int32) in r.kernels.first { $0.rank == 0 && $0.step == step && $0.kind == .dispatch }!.wait }
        // Step 0 follows no idle GPU; step 1 follows 20 ms of it: rank 1 wakes 100 us late.
        #expect(dispatchWait(woken, 0) == dispatchWait(plain, 0))
        #expect(dispatchWait(woken, 1) == dispatchWait(plain, 1) + .us(100))
        #expect(woken.stepLatencies[1] == plain.stepLatencies[1] + .us(100))
        #expect(short.stepLatencies == shortPlain.stepLatencies, "5 ms is below the 10 ms threshold")
    }

    @Test(
        "malformed host keys are refused with the key path",
        arguments: [
            ("host: {launch_us: 3}", "host.mode"),
            ("host: {mode: lazy}", "host.mode"),
            ("host: {mode: eager, launch_us: -1}", "host.launch_us"),
            ("host: {mode: eager, jitter_us: {distribution: zipf, exponent: 1, max: 3}}", "host.jitter_us.distribution"),
            ("host: {mode: eager, jitter_us: {distribution: uniform, min: 5, max: 2}}", "host.jitter_us.max"),
            ("host: {mode: graph, sync: true}", "host"),
        ])
    func malformedHost(entry: String, path: String) {
        do {
            _ = try scenario(Self.base + entry + "\n")
            Issue.record("accepted: \(entry)")
        } catch {
            #expect("\(error)".contains(path), "\(error)")
        }
    }
}
