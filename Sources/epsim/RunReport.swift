import EPSim
import Foundation

/// Plain-text renderings of run results.
enum RunReport {
    static func us(_ x: Double) -> String { String(format: "%.3f", x) }

    /// A per-rank figure as printed: a count as an integer, a time in µs with three decimals.
    static func cell(_ m: RankMetric, _ value: Double) -> String {
        m.unit == .count ? String(Int(exactly: value) ?? 0) : us(value)
    }

    /// Above this many ranks the per-rank rows give way to a summary unless asked for.
    static let summaryAbove = 16

    /// The per-rank table of the slowest step (or its summary), then the step latency line(s)
    /// and the culprit.
    static func table(summary: RunSummary, scenario s: Scenario, wallSeconds: Double, rows: [Int]? = nil) -> String {
        var out = "scenario \(summary.scenario): \(s.cluster.ranks) ranks (\(s.cluster.gpusPerNode) per node), "
        out += "\(s.model.experts) experts, top-\(s.model.topK), \(s.model.moeLayers) MoE layer\(s.model.moeLayers == 1 ? "" : "s"), "
        out += "schedule \(summary.schedule), network \(s.network.kind.rawValue), \(summary.steps) step\(summary.steps == 1 ? "" : "s")\n"
        out += rankTable(summary, rows: rows)
        out += "step latency: \(us(summary.step_latency_us)) us (max over ranks; slowest rank \(summary.slowest_rank))\n"
        if summary.steps > 1 {
            let sorted = summary.step_latencies_us.sorted()
            let mean = sorted.reduce(0, +) / Double(sorted.count)
            out += "over \(summary.steps) steps: min \(us(sorted.first!)) us, mean \(us(mean)) us, p50 \(us(summary.step_latency_p50_us)) us, "
            out += "p90 \(us(summary.step_latency_p90_us)) us, p99 \(us(summary.step_latency_p99_us)) us, max \(us(sorted.last!)) us\n"
        }
        out += throughputLine(summary, scenario: s)
        out += culpritLine(summary)
        out += "simulated \(summary.kernels) kernels, \(summary.flows) flows, \(summary.messages) messages in \(String(format: "%.3f", wallSeconds)) s\n"
        return out
    }
}

extension RunReport {
    /// With multi-token prediction, the accepted tokens per second per GPU and what each
    /// request keeps per step; empty otherwise.
    static func throughputLine(_ summary: RunSummary, scenario s: Scenario) -> String {
        guard let d = s.workload.draftTokens, let rate = summary.accepted_tokens_per_s_per_gpu else { return "" }
        let kept = Set(d).sorted().map { String(format: "%.3f", Workload.acceptedTokensPerRequest(draftTokens: $0, acceptanceRate: s.workload.acceptanceRate)) }
        return String(
            format: "throughput: %.1f accepted tokens/s per GPU (%@ tokens kept per request and step: %@ draft, acceptance %.2f)\n",
            rate, kept.joined(separator: "/"), Set(d).sorted().map(String.init).joined(separator: "/"), s.workload.acceptanceRate)
    }

    /// The culprit line (``Culprit``), empty when no rank made another wait.
    static func culpritLine(_ summary: RunSummary) -> String {
        Culprit.find(blockedWaitMicros: summary.blocked_wait_us).map { $0.sentence + "\n" } ?? ""
    }

    /// The per-rank table of the slowest step: every rank's row up to ``summaryAbove`` ranks,
    /// a summary above (per column min / median / p90 / max and the ranks holding the
    /// extremes, then the slowest ranks); `rows` picks rows to print instead.
    static func rankTable(_ summary: RunSummary, rows chosen: [Int]? = nil) -> String {
        var out = ""
        let slowestStep = summary.step_latencies_us.firstIndex(of: summary.step_latency_us) ?? 0
        let all = summary.per_rank.filter { $0.step == slowestStep }
        if summary.steps > 1 { out += "per-rank figures of step \(slowestStep), the slowest\n" }
        if all.isEmpty { return out + "(no per-rank rows stored)\n" }
        let metrics = RankMetric.shown(in: .table, for: { m in all.map { $0[m] } })
        if chosen == nil && all.count > summaryAbove { return out + spread(all, metrics: metrics) }
        let wanted = chosen.map(Set.init)
        let rows = all.filter { wanted?.contains($0.rank) ?? true }
        let header = ["rank"] + metrics.map(\.name)
        let body = rows.map { r in [String(r.rank)] + metrics.map { cell($0, r[$0]) } }
        return out + TextTable.render(header: header, rows: body)
    }

    /// Per column over ranks: min, median, p90, max, with the ranks holding min and max (the
    /// lowest rank among equals); then the five slowest ranks by e2e.
    static func spread(_ rows: [RunSummary.RankRow], metrics: [RankMetric]) -> String {
        func quantile(_ sorted: [Double], _ q: Double) -> Double { sorted[min(sorted.count - 1, Int((q * Double(sorted.count - 1)).rounded(.up)))] }
        var body: [[String]] = []
        for m in metrics {
            let values = rows.map { ($0.rank, $0[m]) }
            let sorted = values.map(\.1).sorted()
            let low = values.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }!
            let high = values.max { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 > $1.0) }!
            body.append([
                m.name, cell(m, low.1), String(low.0), cell(m, quantile(sorted, 0.5)), cell(m, quantile(sorted, 0.9)), cell(m, high.1), String(high.0),
            ])
        }
        var out = "\(rows.count) ranks, summarised (--all-ranks or --ranks 0-3,7 for rows):\n"
        out += TextTable.render(header: ["column", "min", "min_rank", "median", "p90", "max", "max_rank"], rows: body)
        if let e2e = metrics.first(where: { $0.name == "e2e_us" }) {
            let slowest = rows.sorted { $0[e2e] > $1[e2e] || ($0[e2e] == $1[e2e] && $0.rank < $1.rank) }.prefix(5)
            out += "slowest ranks (e2e_us): " + slowest.map { "\($0.rank) (\(us($0[e2e])))" }.joined(separator: ", ") + "\n"
        }
        return out
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
