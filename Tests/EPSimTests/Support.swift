import EventCore

@testable import EPSim

/// Builds scenario YAML for tests; every field has a small default.
struct ScenarioText {
    var ranks = 2
    var gpusPerNode = 1
    var experts = 16
    var topK = 8
    var hidden = 7168
    var moeLayers = 1
    var steps = 1
    var tokens: [Int] = [128, 128]
    var routing = "balanced"
    var seed = 0
    var schedule = "none"
    var dtype = "fp8"
    var attn0: [Double] = [30]
    var attn1: [Double] = [60]
    var shared: [Double] = [15]
    var gemm: [Double] = [50]
    var sendFixed = 5.0
    var perMessage = 0.02
    var recvFixed = 3.0
    var dispatchCopy = 300.0
    var combineCopy = 1500.0
    var nvlinkGBps = 160.0
    var nvlinkLatency = 2.0
    var rdmaGBps = 50.0
    var rdmaLatency = 4.0
    var nvlinkForLL = true
    var fence = false
    var network = "ideal"
    var nicsPerNode: Int? = nil

    static func list(_ xs: [Double]) -> String { xs.count == 1 ? "\(xs[0])" : "[\(xs.map { "\($0)" }.joined(separator: ", "))]" }

    var yaml: String {
        """
        name: test
        cluster: {ranks: \(ranks), gpus_per_node: \(gpusPerNode)}
        model: {experts: \(experts), top_k: \(topK), hidden: \(hidden), moe_layers: \(moeLayers), dispatch_dtype: \(dtype)}
        workload: {tokens_per_rank: [\(tokens.map(String.init).joined(separator: ", "))], routing: \(routing), seed: \(seed)}
        schedule: \(schedule)
        steps: \(steps)
        network:
          model: \(network)\(nicsPerNode.map { "\n  nics_per_node: \($0)" } ?? "")
          nvlink: {bandwidth_gbps: \(nvlinkGBps), latency_us: \(nvlinkLatency)}
          rdma: {bandwidth_gbps: \(rdmaGBps), latency_us: \(rdmaLatency)}
          nvlink_for_ll: \(nvlinkForLL)
          fence: \(fence)
        costs:
          attn0_us: \(Self.list(attn0))
          attn1_us: \(Self.list(attn1))
          shared_us: \(Self.list(shared))
          gemm_us: \(Self.list(gemm))
          dispatch_send: {fixed_us: \(sendFixed), per_message_us: \(perMessage)}
          dispatch_recv: {fixed_us: \(recvFixed), copy_gbps: \(dispatchCopy)}
          combine_send: {fixed_us: \(sendFixed), per_message_us: \(perMessage)}
          combine_recv: {fixed_us: \(recvFixed), copy_gbps: \(combineCopy)}
        """
    }

    func scenario() throws -> Scenario { try Scenario.parse(yaml: yaml, file: "test.yaml") }
}

extension SimTime {
    static func us(_ x: Double) -> SimTime { SimTime(micros: x) }
}
