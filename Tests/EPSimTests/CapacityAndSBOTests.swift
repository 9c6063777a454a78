import EventCore
import Testing

@testable import EPSim

/// DeepEP's buffer limits, the expert GEMM's rows under a capacity, and single-batch overlap
/// (issue 12, items 4 and 5), on two ranks against closed forms.
@Suite("Capacity limits, padded expert GEMM, single-batch overlap")
struct CapacityAndSBOTests {
    static let base = DecodeRealismTests.base

    // MARK: DeepEP's limits

    @Test(
        "capacities DeepEP's assertions refuse are refused with the key and the assertion",
        arguments: [
            // (C + 1) x 2 <= NVSHMEM_QP_DEPTH (1024 by default): 511 is the largest.
            ("workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 512}", "at most 511 tokens"),
            ("workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 1024, nvshmem_qp_depth: 2048}", "at most 1023 tokens"),
            // ranks x C must be a multiple of 4 for TMA: 2 x 15 = 30 is not.
            ("workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 15}", "multiple of 4"),
            ("workload: {tokens_per_rank: 8, nvshmem_qp_depth: 2048}", "which is not set"),
            ("costs: {expert_gemm: padded}\nworkload: {tokens_per_rank: 8}", "set workload.max_dispatch_tokens_per_rank"),
            ("costs: {expert_gemm: dense}\nworkload: {tokens_per_rank: 8}", "costs.expert_gemm"),
        ])
    func limitsRefused(entry: String, fragment: String) {
        let yaml = Self.base.replacingOccurrences(of: "costs: {attn0_us: 30, attn1_us: 60, shared_us: 15, gemm_us: 50}\n", with: "") + entry + "\n"
        do {
            _ = try scenario(yaml)
            Issue.record("accepted: \(entry)")
        } catch {
            #expect("\(error)".contains(fragment), "\(error)")
        }
    }

    @Test("capacities within DeepEP's limits are accepted: C <= depth / 2 - 1 and 2 x C a multiple of 4 (510 at depth 1024, 1022 at 2048)")
    func limitsAccepted() throws {
        #expect(DeepEPLimits.maxDispatchTokensPerRank() == 511)
        #expect(DeepEPLimits.maxDispatchTokensPerRank(qpDepth: 2048) == 1023)
        // 511 itself is accepted where ranks x 511 is a multiple of 4 (4 ranks), not on 2 (1022).
        #expect(DeepEPLimits.violation(capacity: 511, qpDepth: 1024, ranks: 4, hidden: 7168, fp8: true) == nil)
        #expect(DeepEPLimits.violation(capacity: 511, qpDepth: 1024, ranks: 2, hidden: 7168, fp8: true) != nil)
        _ = try scenario(Self.base + "workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 510}\n")
        _ = try scenario(Self.base + "workload: {tokens_per_rank: 8, max_dispatch_tokens_per_rank: 1022, nvshmem_qp_depth: 2048}\n")
        // FP8 dispatch needs hidden % 512 == 0; BF16 does not.
        #expect(DeepEPLimits.violation(capacity: 128, qpDepth: 1024, ranks: 8, hidden: 640, fp8: true) != nil)
        #expect(DeepEPLimits.violation(capacity: 128, qpDepth: 1024, ranks: 8, hidden: 640, fp8: false) == nil)
    }

    // MARK: The expert GEMM's rows

    static func deepseek(_ extra: String) throws -> Scenario {
        try scenario("hardware: h800\ncluster: {ranks: 8}\nmodel: {preset: deepseek-v3, moe_layers: 1}\nnetwork: {model: ideal}\n" + extra)
    }

    @Test("padded: every local expert computes ranks x C rows, whatever it received (closed form)")
    func paddedRows() throws {
        let s = try Self.deepseek("workload: {tokens_per_rank: 4, max_dispatch_tokens_per_rank: 128}\ncosts: {expert_gemm: padded}\n")
        let cost = CostModel(costs: s.costs, model: s.model)
        var w = ComputeWork()
        w.expertTokens = [3, 0, 70, 1]
        let masked = cost.rooflineWork(.mlp, work: w)
        w.capacityRows = 8 * 128
        let padded = cost.rooflineWork(.mlp, work: w)
        let perExpert = 3.0 * 7168 * 2048
        #expect(masked.flops == 2 * (64 + 128 + 64) * perExpert, "masked: received rows rounded up to 64, empty experts skipped")
        #expect(padded.flops == 4 * 2 * 1024 * perExpert)
        #expect(padded.bytes == 4 * (perExpert * 1 + 1024 * 7168 * 3))
    }

    @Test("padded MLP time follows the capacity, not the batch; masked follows the batch")
    func paddedFollowsCapacity() throws {
        func mlp(_ tokens: Int, _ c: Int, _ layout: String) throws -> SimTime {
            let r = try Simulation.run(try Self.deepseek("workload: {tokens_per_rank: \(tokens), max_dispatch_tokens_per_rank: \(c)}\ncosts: {expert_gemm: \(layout)}\n"))
            return r.kernels.first { $0.kind == .mlp && $0.rank == 0 }!.duration
        }
        #expect(try mlp(1, 256, "padded") == mlp(128, 256, "padded"))
        #expect(try mlp(1, 256, "padded") > mlp(1, 128, "padded"))
        #expect(try mlp(1, 256, "masked") == mlp(1, 128, "masked"))
        #expect(try mlp(1, 256, "masked") < mlp(1, 256, "padded"))
    }

    // MARK: Single-batch overlap

    static let sboBody = "body: [ATTN0, ATTN1, SEND-D, RECV-D@comm, SHARED, MLP, SEND-C@comm, RECV-C]"

    static func sbo(overlap: Bool) throws -> RunResult {
        try Simulation.run(
            try scenario(
                base + "workload: {tokens_per_rank: [16, 16]}\nschedule: {micro_batches: 1, comm_sms: 3, overlap_down_gemm: \(overlap), \(sboBody)}\n"))
    }

    @Test("the sbo preset is the hand-written SBO schedule")
    func presetMatches() throws {
        let preset = try Simulation.run(try scenario(Self.base + "workload: {tokens_per_rank: [16, 16]}\nschedule: sbo\n"))
        let written = try Self.sbo(overlap: true)
        #expect(preset.kernels == written.kernels)
    }

    @Test("SEND-C starts when the MLP reaches its down projection and ends one 64-row block's share after the GEMM")
    func sendCombineOverlapsDownGEMM() throws {
        let s = try scenario(Self.base + "workload: {tokens_per_rank: [16, 16]}\nschedule: sbo\n")
        let sms = Int64(s.cluster.smsPerGPU)
        let overlapped = try Self.sbo(overlap: true)
        let plain = try Self.sbo(overlap: false)
        for r in Int32(0)..<2 {
            let k = { (x: RunResult, kind: KernelKind) in x.kernels.first { $0.rank == r && $0.kind == kind }! }
            let mlp = k(overlapped, .mlp)
            let send = k(overlapped, .sendCombine)
            // 50 us of work on all SMs: the first two thirds at full speed, the last third
            // beside the 3-SM SEND at (S - 3) SMs.
            let work = SimTime.us(50).times(sms).picos
            let downWork = work / 3
            let release = mlp.start + SimTime(picos: (work - downWork + sms - 1) / sms)
            #expect(send.start == release)
            // What is left at the release (the release rounds up to whole picoseconds).
            let left = work - (release - mlp.start).times(sms).picos
            #expect(left <= downWork && left > downWork - sms)
            #expect(mlp.end == release + SimTime(picos: (left + sms - 4) / (sms - 3)))
            // Each local expert got 16 tokens: 8 experts x one 64-row block; the SEND's own
            // duration is the plain schedule's (it waits for the whole MLP there).
            let d = k(plain, .sendCombine).duration
            #expect(k(plain, .sendCombine).start == k(plain, .mlp).end)
            #expect(send.end == max(send.start + d, mlp.end + SimTime(picos: d.picos / 8)))
            #expect(k(overlapped, .recvCombine).start >= send.end)
            #expect(send.bytesOut == k(plain, .sendCombine).bytesOut)
        }
        #expect(overlapped.stepLatency < plain.stepLatency)
    }

    @Test("a SEND on one stream issued before the previous operation's RECV on the other is refused")
    func crossStreamBufferRule() {
        let body = """
            schedule:
              micro_batches: 2
              comm_sms: 3
              body: [ATTN0(A), ATTN1(A), SEND-D(A), RECV-D(A)@comm, SHARED(A), MLP(A), SEND-C(A)@comm, RECV-C(A)@comm, ATTN0(B), ATTN1(B), SEND-D(B), RECV-D(B)@comm, SHARED(B), MLP(B), SEND-C(B)@comm, RECV-C(B)@comm]

            """
        do {
            _ = try scenario(Self.base + "workload: {tokens_per_rank: [16, 16]}\n" + body)
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("SEND-D(B, layer 0) is issued before RECV-C(A, layer 0) has finished"), "\(error)")
        }
    }

    @Test("overlap_down_gemm without a comm-stream SEND-C is refused")
    func overlapNeedsCommSend() {
        do {
            _ = try scenario(Self.base + "schedule: {overlap_down_gemm: true, body: [ATTN0, ATTN1, SHARED, DISPATCH, MLP, COMBINE]}\n")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("SEND-C@comm"), "\(error)")
        }
    }
}
