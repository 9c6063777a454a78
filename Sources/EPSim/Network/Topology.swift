/// Where each rank's traffic goes: which transport joins two ranks, and which NIC a rank's
/// RDMA traffic leaves and enters by.
///
/// Built once per run from the cluster and the network section (``NetworkConfig``). A node
/// holds `gpusPerNode` ranks and `nicsPerNode` NICs; the GPUs of a node are split evenly
/// among its NICs in order (GPU `g` of a node uses NIC `g / (gpusPerNode / nicsPerNode)`),
/// as PCIe switches pair them on DGX/HGX boards. The default, one NIC per GPU, is DeepSeek's
/// H800 cluster (eight 400 Gb/s CX7 NICs per eight-GPU node: DeepSeek-V3 report §3.1).
public struct Topology: Sendable, Equatable {
    public let ranks: Int
    public let gpusPerNode: Int
    public let nicsPerNode: Int
    /// DeepEP's `allow_nvlink_for_low_latency_mode` (see ``NetworkConfig/nvlinkForLowLatency``).
    public let nvlinkForLowLatency: Bool

    /// `nicsPerNode` must divide `gpusPerNode` (the scenario decoder checks it).
    public init(cluster: Cluster, network: NetworkConfig) {
        ranks = cluster.ranks
        gpusPerNode = cluster.gpusPerNode
        nicsPerNode = network.nicsPerNode ?? cluster.gpusPerNode
        nvlinkForLowLatency = network.nvlinkForLowLatency
        precondition(nicsPerNode >= 1 && gpusPerNode % nicsPerNode == 0, "nics_per_node must divide gpus_per_node")
    }

    public func node(of rank: RankID) -> Int { rank.index / gpusPerNode }

    /// The NIC (global index) that carries `rank`'s RDMA traffic.
    @inline(__always) public func nic(of rank: RankID) -> Int {
        node(of: rank) * nicsPerNode + (rank.index % gpusPerNode) / (gpusPerNode / nicsPerNode)
    }

    /// NICs in the cluster (the last node may be partly filled: it still counts its NICs up
    /// to the last one a rank uses).
    public var nicCount: Int { ranks == 0 ? 0 : nic(of: RankID(ranks - 1)) + 1 }

    /// The transport from `source` to `destination`: NVLink to itself and, with
    /// `nvlinkForLowLatency`, to a peer of the same node; RDMA otherwise.
    @inline(__always) public func path(from source: RankID, to destination: RankID) -> Path {
        if source == destination { return .nvlink }
        if nvlinkForLowLatency && node(of: source) == node(of: destination) { return .nvlink }
        return .rdma
    }
}
