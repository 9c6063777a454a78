import EventCore
import Foundation

/// Reproduces DeepEP's published low-latency table (README, H800 + CX7) with the shipped
/// `Scenarios/calibration/deepep-ll-ep*.yaml` family, and fits the `h800` preset to it.
///
/// The published latency is the per-rank time of the fused kernel (send + recv) with ranks
/// aligned; the simulated figure is the mean over ranks of the `DISPATCH` and `COMBINE`
/// kernel durations of one layer with every compute kernel at zero.
public enum DeepEPCalibration {
    public struct Published: Sendable {
        public var ep: Int
        public var dispatchMicros: Double
        public var combineMicros: Double
    }

    /// DeepEP README (`docs/legacy.md` at HEAD), low-latency kernels on H800.
    public static let published: [Published] = [
        Published(ep: 8, dispatchMicros: 77, combineMicros: 114),
        Published(ep: 16, dispatchMicros: 118, combineMicros: 195),
        Published(ep: 32, dispatchMicros: 155, combineMicros: 273),
        Published(ep: 64, dispatchMicros: 173, combineMicros: 314),
        Published(ep: 128, dispatchMicros: 192, combineMicros: 369),
        Published(ep: 256, dispatchMicros: 194, combineMicros: 360),
    ]

    /// DeepEP's first README table ("Low-latency kernels with pure RDMA", before the
    /// 2025-06-05 NVLink change, #173): the same setting with every peer over RDMA, same-node
    /// peers included. Kept as a second check, never fitted to.
    public static let publishedAllRDMA: [Published] = [
        Published(ep: 8, dispatchMicros: 163, combineMicros: 318),
        Published(ep: 16, dispatchMicros: 173, combineMicros: 329),
        Published(ep: 32, dispatchMicros: 182, combineMicros: 350),
        Published(ep: 64, dispatchMicros: 186, combineMicros: 353),
        Published(ep: 128, dispatchMicros: 192, combineMicros: 369),
        Published(ep: 256, dispatchMicros: 194, combineMicros: 360),
    ]

    public struct Row: Sendable {
        public var ep: Int
        public var experts: Int
        public var published: Published
        public var dispatchMicros: Double
        public var combineMicros: Double
        public var dispatchError: Double { dispatchMicros / published.dispatchMicros - 1 }
        public var combineError: Double { combineMicros / published.combineMicros - 1 }
    }

    /// The scenario file of each EP size, in `directory`.
    public static func scenarioPath(ep: Int, directory: String) -> String { "\(directory)/deepep-ll-ep\(ep).yaml" }

    /// Runs the family with `hardware` in place of the files' preset; `allRDMA`: with
    /// `nvlink_for_ll: false`, against ``publishedAllRDMA``.
    public static func run(directory: String, hardware: Hardware = .h800, allRDMA: Bool = false) throws -> [Row] {
        try (allRDMA ? publishedAllRDMA : published).map { p in
            var s = try Scenario.load(path: scenarioPath(ep: p.ep, directory: directory))
            s.apply(hardware)
            if allRDMA { s.network.nvlinkForLowLatency = false }
            let result = try Simulation.run(s)
            func mean(_ kind: KernelKind) -> Double {
                let k = result.kernels.filter { $0.kind == kind }
                return k.map(\.duration.micros).reduce(0, +) / Double(max(k.count, 1))
            }
            return Row(ep: p.ep, experts: s.model.experts, published: p, dispatchMicros: mean(.dispatch), combineMicros: mean(.combine))
        }
    }

    /// The worst absolute relative error of a run.
    public static func worstError(_ rows: [Row]) -> Double {
        rows.map { max(abs($0.dispatchError), abs($0.combineError)) }.max() ?? 0
    }

    /// ``CoordinateSearch`` over the links (RDMA rate and latency, NVLink rate and latency),
    /// minimising the sum of squared relative errors; the kernel-level costs
    /// stay the measured ones (`h200`'s). It starts from the links EPSim had before any
    /// measurement (NVLink 161.1 GB/s and 2 us, RDMA 44.13 GB/s and 6.6 us), so that it
    /// reproduces exactly. Deterministic; a few hundred runs of the family.
    /// The link parameters the fit searches, with their ranges.
    public static let fitParameters: [SearchedParameter] = [
        .init("rdma_gbps", 20...50), .init("rdma_latency_us", 0.5...20), .init("nvlink_gbps", 60...400), .init("nvlink_latency_us", 0.1...5),
    ]

    public static func fit(directory: String, preset: Hardware = .h800, rounds: Int = 6) throws -> (Hardware, [Row]) {
        var start = preset
        (start.nvlinkGBps, start.nvlinkLatencyMicros, start.rdmaGBps, start.rdmaLatencyMicros) = (161.1, 2, 44.13, 6.6)
        let fields = fitParameters
        func score(_ h: Hardware) throws -> Double {
            try run(directory: directory, hardware: h).map { $0.dispatchError * $0.dispatchError + $0.combineError * $0.combineError }.reduce(0, +)
        }
        var best = try CoordinateSearch.minimize(start, parameters: fields.searchSpace, rounds: rounds, score: score)
        for p in fields { best[keyPath: p.field] = MeasuredCalibration.significant(best[keyPath: p.field]) }
        return (best, try run(directory: directory, hardware: best))
    }

    /// The comparison as a Markdown table (a section of `docs/validation.md`).
    /// `intro`: with the paragraph saying what is compared (the first of the two tables).
    public static func tableMarkdown(_ rows: [Row], intro: Bool = true) -> String {
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        func pct(_ x: Double) -> String { String(format: "%+.1f%%", 100 * x) }
        let head = """
            | EP | experts | dispatch published (us) | dispatch simulated (us) | error | combine published (us) | combine simulated (us) | error |
            |---:|---:|---:|---:|---:|---:|---:|---:|

            """
        var out = intro ? "" : head
        if intro { out += """
            DeepEP's published low-latency table (H800, one CX7 400 Gb/s NIC per GPU, 128 tokens per
            rank, H 7168, top-8, FP8 dispatch, BF16 combine; latency of the fused kernel per rank)
            against `Scenarios/calibration/deepep-ll-ep*.yaml` (preset `h800`, `ports` network,
            uniform routing, one layer, every compute kernel at zero; simulated = mean over ranks of
            the `DISPATCH` and `COMBINE` kernels). DeepEP's test uses 288 experts; 288 is not
            divisible by 64, 128 or 256 ranks, so those sizes use 256.


            """ + head }
        for r in rows {
            out += "| \(r.ep) | \(r.experts) | \(f(r.published.dispatchMicros)) | \(f(r.dispatchMicros)) | \(pct(r.dispatchError)) | "
            out += "\(f(r.published.combineMicros)) | \(f(r.combineMicros)) | \(pct(r.combineError)) |\n"
        }
        return out
    }
}

extension Scenario {
    /// Uses `hardware`'s network and DeepEP kernel-cost values (what a file naming the
    /// preset and nothing else would get).
    public mutating func apply(_ hardware: Hardware) {
        let n = cluster.ranks
        network.nvlink = LinkConfig(bandwidthGBps: hardware.nvlinkGBps, latency: SimTime(micros: hardware.nvlinkLatencyMicros))
        network.rdma = LinkConfig(bandwidthGBps: hardware.rdmaGBps, latency: SimTime(micros: hardware.rdmaLatencyMicros))
        network.selfCopyGBps = hardware.selfCopyGBps
        network.nvlinkIngressGBps = hardware.nvlinkIngressGBps
        network.rdmaMessageRateMps = hardware.nicMessageRateMps
        func fixed(_ us: Double) -> [SimTime] { Array(repeating: SimTime(micros: us), count: n) }
        costs.hardware = hardware
        costs.dispatchSend = SendCost(fixed: fixed(hardware.dispatchSendFixedMicros), perMessage: SimTime(micros: hardware.dispatchSendPerMessageMicros))
        costs.dispatchRecv = RecvCost(
            fixed: fixed(hardware.dispatchRecvFixedMicros), copyGBps: hardware.dispatchRecvCopyGBps, pairGBps: hardware.dispatchRecvPairGBps)
        costs.combineSend = SendCost(
            fixed: fixed(hardware.combineSendFixedMicros), perMessage: SimTime(micros: hardware.combineSendPerMessageMicros),
            pairGBps: hardware.combineSendPairGBps)
        costs.combineRecv = RecvCost(fixed: fixed(hardware.combineRecvFixedMicros), copyGBps: hardware.combineRecvReduceGBps)
        costs.launchGap = SimTime(micros: hardware.launchGapMicros)
    }
}
