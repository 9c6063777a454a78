/// Limits DeepEP's V1 low-latency kernels enforce, which a scenario must respect to describe
/// a deployment that could run.
public enum DeepEPLimits {
    /// The largest `num_max_dispatch_tokens_per_rank`. PLACEHOLDER, to be sourced.
    public static let maxDispatchTokensPerRank = 1024
}
