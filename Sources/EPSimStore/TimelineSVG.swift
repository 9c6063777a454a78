import EPSim
import EventCore
import Foundation

/// `epsim plot`: pictures of runs, as plain SVG.
public enum Plot {
    /// The timeline of one step: a lane per rank and stream, kernels coloured by kind
    /// (micro-batch B lighter, with a dashed edge), the wait inside RECV kernels hatched, and
    /// the critical path outlined with its messages drawn as arrows. Ranks beyond `ranks`
    /// are left out; with many ranks the lanes are condensed.
    public static func timeline(_ result: RunResult, step requested: Int? = nil, ranks selected: [Int]? = nil, title: String) -> String {
        let path = CriticalPath(result, step: requested)
        let step = path?.step ?? 0
        let ranks = (selected ?? Array(0..<result.ranks)).filter { $0 < result.ranks }
        let kernels = result.kernels.filter { $0.step == Int32(step) && ranks.contains(Int($0.rank)) }
        let usesComm = result.kernels.contains { $0.stream == .comm }
        let streams: [StreamKind] = usesComm ? [.compute, .comm] : [.compute]
        let lanes = ranks.count * streams.count
        let condensed = lanes > 32
        let laneHeight: Double = condensed ? max(4, 640 / Double(lanes)) : 26
        let left: Double = 120, top: Double = 70, right: Double = 30
        let width: Double = 1400
        let plotWidth = width - left - right
        let height = top + Double(lanes) * laneHeight + 60
        let t0 = (0..<result.ranks).map { result.rankStep(rank: $0, step: step).start }.min() ?? .zero
        let t1 = (0..<result.ranks).map { result.rankStep(rank: $0, step: step).end }.max() ?? .zero
        let span = max((t1 - t0).micros, 1e-6)
        func x(_ t: SimTime) -> Double { left + (t - t0).micros / span * plotWidth }
        func laneY(_ rank: Int32, _ stream: StreamKind) -> Double {
            let i = (ranks.firstIndex(of: Int(rank)) ?? 0) * streams.count + (streams.firstIndex(of: stream) ?? 0)
            return top + Double(i) * laneHeight
        }
        var svg = SVG(width: width, height: height)
        svg.raw(
            "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"white\" fill-opacity=\"0.35\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#222\" stroke-width=\"2\"/></pattern>"
                + "<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#111\"/></marker></defs>"
        )
        svg.text(left, 20, title + " — step \(step), \(String(format: "%.3f", (t1 - t0).micros)) us", size: 15, extra: "font-weight=\"bold\"")
        // Legend.
        var lx = left
        for (name, color) in [
            ("ATTN0", "#4e79a7"), ("ATTN1", "#76b7b2"), ("SHARED", "#59a14f"), ("MLP", "#edc948"), ("dispatch", "#f28e2b"), ("combine", "#e15759"),
            ("DENSE", "#b07aa1"), ("BARRIER", "#9c755f"),
        ] {
            svg.rect(lx, 30, 12, 12, fill: color)
            svg.text(lx + 16, 40, name)
            lx += 16 + Double(name.count) * 7 + 14
        }
        svg.rect(lx, 30, 12, 12, fill: "#888", extra: "fill-opacity=\"0.5\" stroke=\"#333\" stroke-dasharray=\"2,1\"")
        svg.text(lx + 16, 40, "micro-batch B")
        lx += 120
        svg.rect(lx, 30, 12, 12, fill: "url(#hatch)", extra: "stroke=\"#333\"")
        svg.text(lx + 16, 40, "wait (spinning)")
        lx += 115
        svg.rect(lx, 30, 12, 12, fill: "none", extra: "stroke=\"#000\" stroke-width=\"2.5\"")
        svg.text(lx + 16, 40, "critical path")
        // Lanes and their labels.
        for (i, r) in ranks.enumerated() {
            for (j, s) in streams.enumerated() {
                let y = top + Double(i * streams.count + j) * laneHeight
                svg.rect(
                    left, y, plotWidth, laneHeight, fill: (i * streams.count + j) % 2 == 0 ? "#f4f4f4" : "#ffffff",
                    extra: "class=\"lane\" data-rank=\"\(r)\" data-stream=\"\(s)\"")
                if !condensed || (i % max(1, lanes / 32) == 0 && j == 0) {
                    svg.text(left - 6, y + laneHeight * 0.7, streams.count > 1 ? "rank \(r) \(s)" : "rank \(r)", size: condensed ? 8 : 11, anchor: "end")
                }
            }
        }
        // Time axis.
        let tick = SVG.tickStep(span)
        var t = 0.0
        let axisY = top + Double(lanes) * laneHeight
        while t <= span + 1e-9 {
            let px = left + t / span * plotWidth
            svg.line(px, top, px, axisY + 4, stroke: "#ccc", width: 0.5)
            svg.text(px, axisY + 16, String(format: tick < 1 ? "%.1f" : "%.0f", t + t0.micros), size: 10, anchor: "middle")
            t += tick
        }
        svg.text(left + plotWidth / 2, axisY + 34, "time (us)", size: 11, anchor: "middle")
        // Kernels, their waits.
        let pad = condensed ? 0.5 : 3
        for k in kernels {
            let y = laneY(k.rank, k.stream) + pad
            let h = laneHeight - 2 * pad
            let color = SVG.palette[k.kind.description] ?? "#999"
            let b =
                k.microBatch == .b
                ? "fill-opacity=\"0.55\" stroke=\"#333\" stroke-width=\"0.6\" stroke-dasharray=\"3,1.5\"" : "stroke=\"#fff\" stroke-width=\"0.4\""
            var tip =
                "rank \(k.rank) \(k.kind)(\(k.microBatch)) layer \(k.layer): \(String(format: "%.3f", k.start.micros))-\(String(format: "%.3f", k.end.micros)) us"
            if k.wait > .zero { tip += ", wait \(String(format: "%.3f", k.wait.micros)) us for rank \(k.blocker) (\(k.blameReason))" }
            svg.rect(x(k.start), y, x(k.end) - x(k.start), h, fill: color, extra: "class=\"kernel\" \(b)", title: tip)
            if k.wait > .zero, let arrival = k.lastArrival {
                svg.rect(x(arrival - k.wait), y, x(arrival) - x(arrival - k.wait), h, fill: "url(#hatch)", extra: "class=\"wait\"")
            }
            if !condensed && x(k.end) - x(k.start) > 34 {
                svg.text(x(k.start) + 2, y + h * 0.68, k.kind.description + (k.microBatch == .b ? " B" : ""), size: 9, extra: "fill=\"#111\"")
            }
        }
        // The critical path: outlines and message arrows.
        if let path {
            for link in path.links where ranks.contains(Int(link.rank)) && ranks.contains(Int(link.fromRank)) {
                switch link.kind {
                case .message:
                    let y1 = laneY(link.fromRank, link.kernel.stream) + laneHeight / 2
                    let receiver = path.links.first { $0.kind == .receive && $0.start == link.end && $0.rank == link.rank }
                    let y2 = laneY(link.rank, receiver?.kernel.stream ?? .compute) + laneHeight / 2
                    svg.line(x(link.start), y1, x(link.end), y2, stroke: "#111", width: 1.6, extra: "class=\"critical-message\" marker-end=\"url(#arrow)\"")
                default:
                    let y = laneY(link.rank, link.kernel.stream) + pad
                    svg.rect(
                        x(link.start), y, x(link.end) - x(link.start), laneHeight - 2 * pad, fill: "none",
                        extra: "class=\"critical\" stroke=\"#000\" stroke-width=\"2.5\"")
                }
            }
        }
        return svg.document
    }

    /// Grouped bars: one stacked bar per run, the slowest rank's step broken down by kind.
    public static func compare(_ columns: [(label: String, summary: RunSummary)], title: String) -> String {
        let allParts: [(String, String, (RunSummary.RankRow) -> Double)] = [
            ("attention", "#4e79a7", { $0[.attention] }), ("shared", "#59a14f", { $0[.shared] }), ("dense", "#b07aa1", { $0[.dense] }),
            ("gemm", "#edc948", { $0[.gemm] }), ("dispatch work", "#f28e2b", { $0[.dispatch] - $0[.dispatchWait] }),
            ("dispatch wait", "#f7c08a", { $0[.dispatchWait] }), ("combine work", "#e15759", { $0[.combine] - $0[.combineWait] }),
            ("combine wait", "#f2a6a7", { $0[.combineWait] }), ("barrier", "#9c755f", { $0[.barrier] }),
            ("launch gaps", "#bab0ac", { $0[.launchGaps] }),
        ]
        let rows = columns.map { c -> (String, RunSummary.RankRow?, Double) in
            let step = c.summary.step_latencies_us.firstIndex(of: c.summary.step_latency_us) ?? 0
            let row = c.summary.per_rank.filter { $0.step == step }.max { $0[.e2e] < $1[.e2e] }
            return (c.label, row, c.summary.step_latency_us)
        }
        // Barrier and launch-gap segments (and their legend) only where a run has them.
        let optional: Set<String> = ["barrier", "launch gaps"]
        let parts = allParts.filter { p in !optional.contains(p.0) || rows.contains { r in r.1.map { p.2($0) != 0 } ?? false } }
        let maxValue = rows.map { r in max(r.2, r.1.map { row in parts.map { $0.2(row) }.reduce(0, +) } ?? 0) }.max() ?? 1
        // Labels go under their bars on up to three lines ("run 1:", the scenario, "[schedule]").
        func labelLines(_ label: String) -> [String] {
            label.replacingOccurrences(of: ": ", with: ":\n").replacingOccurrences(of: " [", with: "\n[").split(separator: "\n").map(String.init)
        }
        let longest = Double(rows.flatMap { labelLines($0.0) }.map(\.count).max() ?? 10)
        let barWidth = 70.0, left = 80.0, top = 60.0, plotHeight = 380.0
        let gap = max(50.0, longest * 6.2 - barWidth + 10)
        let width = max(700, left + Double(rows.count) * (barWidth + gap) + 220)
        var svg = SVG(width: width, height: top + plotHeight + 110)
        svg.text(left, 25, title, size: 15, extra: "font-weight=\"bold\"")
        svg.text(left, 44, "slowest rank of the slowest step; the black tick marks the step latency", size: 11)
        let tick = SVG.tickStep(maxValue, count: 6)
        var v = 0.0
        while v <= maxValue * 1.0001 + tick {
            let y = top + plotHeight - v / (maxValue * 1.05) * plotHeight
            if y < top { break }
            svg.line(left, y, width - 220, y, stroke: "#ddd", width: 0.6)
            svg.text(left - 6, y + 4, String(format: "%.0f", v), size: 10, anchor: "end")
            v += tick
        }
        svg.text(20, top + plotHeight / 2, "us", size: 11)
        for (i, row) in rows.enumerated() {
            let x = left + gap / 2 + Double(i) * (barWidth + gap)
            var y = top + plotHeight
            if let r = row.1 {
                for (name, color, value) in parts {
                    let h = value(r) / (maxValue * 1.05) * plotHeight
                    y -= h
                    svg.rect(x, y, barWidth, h, fill: color, extra: "class=\"bar\"", title: "\(row.0): \(name) \(String(format: "%.3f", value(r))) us")
                }
            }
            let ly = top + plotHeight - row.2 / (maxValue * 1.05) * plotHeight
            svg.line(x - 6, ly, x + barWidth + 6, ly, stroke: "#000", width: 2.5)
            svg.text(x + barWidth / 2, ly - 5, String(format: "%.1f", row.2), size: 10, anchor: "middle")
            for (j, line) in labelLines(row.0).enumerated() {
                svg.text(x + barWidth / 2, top + plotHeight + 16 + Double(j) * 13, line, size: 10, anchor: "middle")
            }
        }
        var ly = top
        for (name, color, _) in parts.reversed() {
            svg.rect(width - 200, ly, 12, 12, fill: color)
            svg.text(width - 182, ly + 10, name)
            ly += 20
        }
        return svg.document
    }

    /// A line chart of `y` against `x`, one line per value of `series`, from CSV rows.
    public static func lines(csv: String, x: String, y: String, series: String?, title: String) throws -> String {
        let lines = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        guard let header = lines.first, let xi = header.firstIndex(of: x), let yi = header.firstIndex(of: y) else {
            throw PlotError("the CSV has no column \(header(lines).contains(x) ? y : x); columns: \(header(lines).joined(separator: ", "))")
        }
        let si = series.flatMap { header.firstIndex(of: $0) }
        var groups: [String: [(Double, Double)]] = [:]
        var order: [String] = []
        for row in lines.dropFirst() where row.count == header.count {
            // Not a number, or nan/inf: not a point to draw.
            guard let xv = Double(row[xi]), let yv = Double(row[yi]), xv.isFinite, yv.isFinite else { continue }
            let key = si.map { row[$0] } ?? y
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append((xv, yv))
        }
        let all = groups.values.flatMap { $0 }
        guard let xmin = all.map(\.0).min(), let xmax = all.map(\.0).max(), let ymax = all.map(\.1).max() else { throw PlotError("no numeric rows to plot") }
        let left = 80.0, top = 60.0, w = 640.0, h = 360.0
        var svg = SVG(width: left + w + 220, height: top + h + 70)
        svg.text(left, 25, title, size: 15, extra: "font-weight=\"bold\"")
        // The y axis runs from 0; values too large to scale (beyond 1e300) are refused.
        guard abs(ymax) < 1e300, abs(xmax) < 1e300, abs(xmin) < 1e300 else { throw PlotError("values beyond 1e300 cannot be drawn") }
        let ytop = ymax > 0 ? ymax * 1.08 : 1
        func px(_ v: Double) -> Double { left + (xmax > xmin ? (v - xmin) / (xmax - xmin) : 0.5) * w }
        func py(_ v: Double) -> Double { top + h - v / ytop * h }
        let ytick = SVG.tickStep(ytop, count: 6)
        var v = 0.0
        while v <= ytop {
            svg.line(left, py(v), left + w, py(v), stroke: "#ddd", width: 0.6)
            svg.text(left - 6, py(v) + 4, String(format: "%.0f", v), size: 10, anchor: "end")
            v += ytick
        }
        for xv in Set(all.map(\.0)).sorted() {
            svg.line(px(xv), top + h, px(xv), top + h + 4, stroke: "#333")
            svg.text(px(xv), top + h + 16, String(format: xv == xv.rounded() ? "%.0f" : "%.2f", xv), size: 10, anchor: "middle")
        }
        svg.text(left + w / 2, top + h + 36, x, size: 11, anchor: "middle")
        svg.text(left, top - 8, y, size: 11)
        let colors = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]
        for (i, key) in order.enumerated() {
            let pts = groups[key]!.sorted { $0.0 < $1.0 }
            let color = colors[i % colors.count]
            svg.raw(
                "<polyline class=\"series\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\""
                    + pts.map { "\(SVG.n(px($0.0))),\(SVG.n(py($0.1)))" }.joined(separator: " ") + "\"/>")
            for p in pts { svg.raw("<circle cx=\"\(SVG.n(px(p.0)))\" cy=\"\(SVG.n(py(p.1)))\" r=\"3\" fill=\"\(color)\"/>") }
            svg.rect(left + w + 20, top + Double(i) * 20, 12, 12, fill: color)
            svg.text(left + w + 38, top + Double(i) * 20 + 10, (series.map { "\($0)=" } ?? "") + key)
        }
        return svg.document
    }

    static func header(_ lines: [[String]]) -> [String] { lines.first ?? [] }
}

public struct PlotError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
