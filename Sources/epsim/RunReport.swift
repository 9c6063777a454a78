import EPSim
import Foundation

/// Plain-text renderings of run results.
enum RunReport {
    static func us(_ x: Double) -> String { String(format: "%.3f", x) }

    /// A per-rank figure as printed: a count as an integer, a time in µs with three decimals.
    static func cell(_ m: RankMetric, _ value: Double) -> String {
        m.unit == .count ? String(Int(exactly: value) ?? 0) : us(value)
    }

    /// The per-rank table of the slowest step, then the step latency line(s).
    static func table(summary: RunSummary, scenario s: Scenario, wallSeconds: Double) -> String {
        var out = "scenario \(summary.scenario): \(s.cluster.ranks) ranks (\(s.cluster.gpusPerNode) per node), "
        out += "\(s.model.experts) experts, top-\(s.model.topK), \(s.model.moeLayers) MoE layer\(s.model.moeLayers == 1 ? "" : "s"), "
        out += "schedule \(summary.schedule), network \(s.network.kind.rawValue), \(summary.steps) step\(summary.steps == 1 ? "" : "s")\n"
        out += rankTable(summary)
        out += "step latency: \(us(summary.step_latency_us)) us (max over ranks; slowest rank \(summary.slowest_rank))\n"
        if summary.steps > 1 {
            let sorted = summary.step_latencies_us.sorted()
            let mean = sorted.reduce(0, +) / Double(sorted.count)
            out += "over \(summary.steps) steps: min \(us(sorted.first!)) us, mean \(us(mean)) us, p50 \(us(summary.step_latency_p50_us)) us, "
            out += "p90 \(us(summary.step_latency_p90_us)) us, p99 \(us(summary.step_latency_p99_us)) us, max \(us(sorted.last!)) us\n"
        }
        if let worst = summary.blocked_wait_us.indices.max(by: { summary.blocked_wait_us[$0] < summary.blocked_wait_us[$1] }),
            summary.blocked_wait_us[worst] > 0
        {
            out += "most waited-for rank: \(worst) (\(us(summary.blocked_wait_us[worst])) us of RECV wait, summed over receivers)\n"
        }
        out += "simulated \(summary.kernels) kernels, \(summary.flows) flows, \(summary.messages) messages in \(String(format: "%.3f", wallSeconds)) s\n"
        return out
    }
}

extension RunReport {
    /// The per-rank table of the slowest step (ranks as rows), with the step latency lines.
    static func rankTable(_ summary: RunSummary) -> String {
        var out = ""
        let slowestStep = summary.step_latencies_us.firstIndex(of: summary.step_latency_us) ?? 0
        let rows = summary.per_rank.filter { $0.step == slowestStep }
        if summary.steps > 1 { out += "per-rank figures of step \(slowestStep), the slowest\n" }
        if rows.isEmpty { return out + "(no per-rank rows stored)\n" }
        let metrics = RankMetric.shown(in: .table, for: { m in rows.map { $0[m] } })
        let header = ["rank"] + metrics.map(\.name)
        let body = rows.map { r in [String(r.rank)] + metrics.map { cell($0, r[$0]) } }
        return out + TextTable.render(header: header, rows: body)
    }
}

/// A right-aligned, space-separated text table.
enum TextTable {
    static func render(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { String(repeating: " ", count: widths[$0.offset] - $0.element.count) + $0.element }
                .joined(separator: "  ") + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}
