import EventCore
import Testing

@testable import EPSim

/// Core attention's precision and the KV cache's (`model.attention_dtype`,
/// `model.kv_cache_dtype`): closed forms of the roofline and the keys' checks.
@Suite("Attention precision")
struct AttentionPrecisionTests {
    static func attn1(_ extra: String, tokens: Int = 64, kv: Int = 4096) throws -> (SimTime, Scenario) {
        let s = try scenario("hardware: {preset: h800, attention_core_stream_gbps: 0}\ncluster: {ranks: 8}\nmodel: {preset: deepseek-v3\(extra)}\n")
        var w = ComputeWork()
        w.tokens = tokens
        w.kvLength = kv
        return (CostModel(costs: s.costs, model: s.model).computeDuration(.attn1, rank: RankID(0), microBatch: .a, microBatches: 1, work: w), s)
    }

    /// DeepSeek-V3 decode ATTN1 for t tokens against a KV of length L (MLA, absorbed): core
    /// FLOPs 2 t L 128 (512 + 64 + 512), the output projection 128 x 128 x 7168 plus the
    /// absorbed value 512 x 128 x 128, the gate 7168 x 256; bytes: the cache t L 576 x kv
    /// bytes, FP8 weights, BF16 gate and activations.
    static func expected(tokens t: Double, kv: Double, coreBF16: Bool, kvBytes: Double) -> Double {
        let core = 2 * t * kv * 128 * (512 + 64 + 512)
        let out: Double = 128 * 128 * 7168 + 512 * 128 * 128
        let gate: Double = 7168 * 256
        let rest = 2 * t * (out + gate)
        let bytes = t * kv * 576 * kvBytes + out + gate * 2 + t * 7168 * 2
        let compute = coreBF16 ? (rest / 1979 + core / 989) / (1e12 * 0.6) : (core + rest) / (1979e12 * 0.6)
        return 3 + max(compute, bytes / (3350e9 * 0.8)) * 1e6
    }

    @Test("DeepSeek-V3 defaults to BF16 core attention and a BF16 KV cache; each key changes exactly its part", arguments: [16, 64, 256])
    func closedForms(tokens: Int) throws {
        let t = Double(tokens)
        let (bf16, s) = try Self.attn1("", tokens: tokens)
        #expect(s.model.architecture.attentionPrecision == .bf16 && s.model.architecture.kvBytes == 2)
        #expect(bf16 == SimTime(micros: Self.expected(tokens: t, kv: 4096, coreBF16: true, kvBytes: 2)))
        let (fp8Compute, _) = try Self.attn1(", attention_dtype: fp8", tokens: tokens)
        #expect(fp8Compute == SimTime(micros: Self.expected(tokens: t, kv: 4096, coreBF16: false, kvBytes: 2)))
        let (fp8Cache, _) = try Self.attn1(", kv_cache_dtype: fp8", tokens: tokens)
        #expect(fp8Cache == SimTime(micros: Self.expected(tokens: t, kv: 4096, coreBF16: true, kvBytes: 1)))
        #expect(fp8Cache <= bf16 && fp8Compute <= bf16, "FP8 is never slower")
    }

    @Test("other kernels do not depend on the attention keys")
    func onlyAttention() throws {
        let a = try scenario("hardware: {preset: h800, attention_core_stream_gbps: 0}\ncluster: {ranks: 8}\nmodel: {preset: deepseek-v3}\n")
        let b = try scenario("hardware: {preset: h800, attention_core_stream_gbps: 0}\ncluster: {ranks: 8}\nmodel: {preset: deepseek-v3, attention_dtype: fp8, kv_cache_dtype: fp8}\n")
        var w = ComputeWork()
        w.tokens = 32
        w.kvLength = 2048
        w.expertTokens = [40, 3]
        for kind: KernelKind in [.attn0, .shared, .mlp, .dense] {
            let x = CostModel(costs: a.costs, model: a.model).computeDuration(kind, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
            let y = CostModel(costs: b.costs, model: b.model).computeDuration(kind, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
            #expect(x == y, "\(kind)")
        }
    }

    @Test("malformed values are refused with the key path", arguments: ["attention_dtype: fp16", "kv_cache_dtype: 2", "attention_dtype: [bf16]"])
    func malformed(entry: String) {
        #expect(throws: ScenarioError.self) { try scenario("cluster: {ranks: 8}\nmodel: {preset: deepseek-v3, \(entry)}\n") }
        do {
            _ = try scenario("cluster: {ranks: 8}\nmodel: {preset: deepseek-v3, \(entry)}\n")
        } catch {
            #expect("\(error)".contains("model.\(entry.split(separator: ":")[0])"), "\(error)")
        }
    }
}
