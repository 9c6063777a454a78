/// Limits DeepEP's V1 low-latency kernels enforce on `num_max_dispatch_tokens_per_rank` (the
/// capacity `C` of each rank's dispatch send and receive buffers), which a scenario that sets
/// `workload.max_dispatch_tokens_per_rank` must respect to describe a deployment that could run.
///
/// Source: deepseek-ai/DeepEP at commit 567632d, the code the calibration harness built
/// (`deep_ep/buffer.py` lines 602 and 656, `csrc/deep_ep.cpp` lines 1598 and 1602); the same
/// assertions stand at dd758ca (moved to `deep_ep/buffers/legacy.py` lines 113, 609, 665 and
/// `csrc/legacy/buffer.hpp` lines 1526 and 1530). Line numbers below are dd758ca's.
public enum DeepEPLimits {
    /// `NVSHMEM_QP_DEPTH` when the environment leaves it unset: `legacy.py` line 113 sets
    /// `int(os.environ.get('NVSHMEM_QP_DEPTH', '1024'))` for low-latency mode.
    public static let defaultQPDepth = 1024

    /// The largest capacity a queue-pair depth admits: `legacy.py` lines 609 and 665 assert
    /// `nvshmem_qp_depth >= (num_max_dispatch_tokens_per_rank + 1) * 2` before every
    /// low-latency dispatch and combine (so that in-flight work requests never overrun a queue
    /// pair), hence `C <= depth / 2 - 1`: 511 at the default depth of 1024.
    public static func maxDispatchTokensPerRank(qpDepth: Int = defaultQPDepth) -> Int { qpDepth / 2 - 1 }

    /// The receive buffer `[local experts, ranks x C, hidden]` is read by TMA, which needs its
    /// token dimension to be a multiple of 4 (`buffer.hpp` line 1526:
    /// `(num_ranks * num_max_dispatch_tokens_per_rank) % 4 == 0`).
    public static let tmaTokenAlignment = 4

    /// FP8 dispatch quantizes per 128 channels and packs the scales for TMA in groups of four:
    /// `buffer.hpp` line 1530 asserts `hidden % 512 == 0` when `use_fp8`.
    public static let fp8HiddenAlignment = 512

    /// The first limit `capacity` breaks for `ranks` ranks of hidden size `hidden`, as a
    /// sentence naming DeepEP's assertion; nil when DeepEP accepts it.
    public static func violation(capacity: Int, qpDepth: Int, ranks: Int, hidden: Int, fp8: Bool) -> String? {
        let limit = maxDispatchTokensPerRank(qpDepth: qpDepth)
        if capacity > limit {
            return "DeepEP asserts NVSHMEM_QP_DEPTH >= (max_dispatch_tokens_per_rank + 1) x 2, so at a queue-pair depth of \(qpDepth) the capacity is at most \(limit) tokens, not \(capacity) (raise workload.nvshmem_qp_depth, as NVSHMEM_QP_DEPTH does)"
        }
        if (ranks * capacity) % tmaTokenAlignment != 0 {
            return "DeepEP's TMA needs ranks x max_dispatch_tokens_per_rank to be a multiple of \(tmaTokenAlignment); \(ranks) x \(capacity) = \(ranks * capacity) is not"
        }
        if fp8 && hidden % fp8HiddenAlignment != 0 {
            return "DeepEP's FP8 dispatch needs the hidden size to be a multiple of \(fp8HiddenAlignment); \(hidden) is not"
        }
        return nil
    }
}
