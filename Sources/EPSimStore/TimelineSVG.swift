import EPSim
import EventCore
import Foundation

/// `epsim plot`: pictures of runs, as plain SVG.
public enum Plot {
    /// Above this many ranks, with no ranks selected, the timeline is aggregated.
    public static let aggregateAbove = 16
    /// Ranks drawn in full beside the band when aggregated: the slowest by end-to-end.
    public static let slowestShown = 3

    /// The timeline of one step: a lane per rank and stream, kernels coloured by kind
    /// (micro-batch B lighter, with a dashed edge), the wait inside RECV kernels hatched, and
    /// the critical path outlined with its messages drawn as arrows.
    ///
    /// - `ranks`: the ranks to draw, in order. Without it, up to ``aggregateAbove`` ranks are
    ///   all drawn; above, one **band** lane per stream sums up every rank (for each kernel of
    ///   the program: a light bar from the earliest start to the latest end over ranks and a
    ///   solid bar from the median start to the median end), followed by the
    ///   ``slowestShown`` slowest ranks in full. The picture's size is then bounded by the
    ///   program, not the cluster.
    /// - `layers`: only kernels of these layers (and the time they span).
    /// - `window`: only the time from `window.lowerBound` to `window.upperBound` µs (absolute
    ///   simulated time), kernels clipped to it.
    public static func timeline(
        _ result: RunResult, step requested: Int? = nil, ranks selected: [Int]? = nil, layers: ClosedRange<Int>? = nil,
        window: ClosedRange<Double>? = nil, title: String
    ) -> String {
        let path = CriticalPath(result, step: requested)
        let step = path?.step ?? 0
        let aggregate = selected == nil && result.ranks > aggregateAbove
        let ranks: [Int]
        if let selected {
            ranks = selected.filter { $0 < result.ranks }
        } else if aggregate {
            ranks = (0..<result.ranks).sorted {
                let a = result.rankStep(rank: $0, step: step).latency, b = result.rankStep(rank: $1, step: step).latency
                return a > b || (a == b && $0 < $1)
            }.prefix(slowestShown).sorted()
        } else {
            ranks = Array(0..<result.ranks)
        }
        let inLayers: (KernelRecord) -> Bool = { k in layers.map { $0.contains(Int(k.layer)) } ?? true }
        let stepKernels = result.kernels.filter { $0.step == Int32(step) && inLayers($0) }
        let shownSet = Set(ranks)
        let kernels = stepKernels.filter { shownSet.contains(Int($0.rank)) }
        let usesComm = result.kernels.contains { $0.stream == .comm }
        let streams: [StreamKind] = usesComm ? [.compute, .comm] : [.compute]
        let bandLanes = aggregate ? streams.count : 0
        let lanes = bandLanes + ranks.count * streams.count
        let condensed = lanes > 32
        let laneHeight: Double = condensed ? max(4, 640 / Double(lanes)) : 26
        let left: Double = 150, top: Double = 70, right: Double = 30
        let width: Double = 1400
        let plotWidth = width - left - right
        let height = top + Double(lanes) * laneHeight + 60
        // The time shown: the window, else the selected layers' kernels, else the whole step.
        var t0 = (0..<result.ranks).map { result.rankStep(rank: $0, step: step).start }.min() ?? .zero
        var t1 = (0..<result.ranks).map { result.rankStep(rank: $0, step: step).end }.max() ?? .zero
        if layers != nil, let first = stepKernels.map(\.start).min(), let last = stepKernels.map(\.end).max() { (t0, t1) = (first, last) }
        if let window { (t0, t1) = (SimTime(micros: window.lowerBound), SimTime(micros: window.upperBound)) }
        let span = max((t1 - t0).micros, 1e-6)
        func x(_ t: SimTime) -> Double { left + (min(max(t, t0), t1) - t0).micros / span * plotWidth }
        func visible(_ a: SimTime, _ b: SimTime) -> Bool { b >= t0 && a <= t1 }
        func laneY(_ rank: Int32, _ stream: StreamKind) -> Double {
            let i = bandLanes + (ranks.firstIndex(of: Int(rank)) ?? 0) * streams.count + (streams.firstIndex(of: stream) ?? 0)
            return top + Double(i) * laneHeight
        }
        var svg = SVG(width: width, height: height)
        svg.raw(
            "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"white\" fill-opacity=\"0.35\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#222\" stroke-width=\"2\"/></pattern>"
                + "<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#111\"/></marker></defs>"
        )
        let latency = (0..<result.ranks).map { result.rankStep(rank: $0, step: step).latency }.max() ?? .zero
        var heading = title + " — step \(step), latency \(String(format: "%.3f", latency.micros)) us"
        if layers != nil || window != nil { heading += ", showing \(String(format: "%.1f", t0.micros))-\(String(format: "%.1f", t1.micros)) us" }
        if let layers { heading += ", layers \(layers.lowerBound)-\(layers.upperBound)" }
        if aggregate { heading += "; all \(result.ranks) ranks as a band, the \(ranks.count) slowest in full" }
        svg.text(left, 20, heading, size: 15, extra: "font-weight=\"bold\"")
        // Legend: only the kinds drawn (the band draws every rank's kernels, else only the
        // ranks shown), within the window; waits and the critical path only when drawn.
        let drawn = (aggregate ? stepKernels : kernels).filter { visible($0.start, $0.end) }
        let anyWait = kernels.contains { visible($0.start, $0.end) && $0.wait > .zero && $0.lastArrival != nil }
        let pathLinks = (path?.links ?? []).filter { shownSet.contains(Int($0.rank)) && shownSet.contains(Int($0.fromRank)) && visible($0.start, $0.end) }
        let present = Set(drawn.map { k -> String in
            switch k.kind {
            case .sendDispatch, .dispatch, .recvDispatch: return "dispatch"
            case .sendCombine, .combine, .recvCombine: return "combine"
            default: return k.kind.description
            }
        })
        var lx = left
        for (name, color) in [
            ("ATTN0", "#4e79a7"), ("ATTN1", "#76b7b2"), ("SHARED", "#59a14f"), ("MLP", "#edc948"), ("dispatch", "#f28e2b"), ("combine", "#e15759"),
            ("DENSE", "#b07aa1"), ("BARRIER", "#9c755f"),
        ] where present.contains(name) {
            svg.rect(lx, 30, 12, 12, fill: color)
            svg.text(lx + 16, 40, name)
            lx += 16 + Double(name.count) * 7 + 14
        }
        if drawn.contains(where: { $0.microBatch == .b }) {
            svg.rect(lx, 30, 12, 12, fill: "#888", extra: "fill-opacity=\"0.5\" stroke=\"#333\" stroke-dasharray=\"2,1\"")
            svg.text(lx + 16, 40, "micro-batch B")
            lx += 120
        }
        if anyWait {
            svg.rect(lx, 30, 12, 12, fill: "url(#hatch)", extra: "stroke=\"#333\"")
            svg.text(lx + 16, 40, "wait (spinning)")
            lx += 115
        }
        if !pathLinks.isEmpty {
            svg.rect(lx, 30, 12, 12, fill: "none", extra: "stroke=\"#000\" stroke-width=\"2.5\"")
            svg.text(lx + 16, 40, "critical path")
            lx += 110
        }
        if aggregate {
            svg.rect(lx, 30, 12, 12, fill: "#888", extra: "fill-opacity=\"0.3\"")
            svg.text(lx + 16, 40, "band: earliest start to latest end; solid: median")
        }
        // Lanes and their labels.
        for j in 0..<bandLanes {
            let y = top + Double(j) * laneHeight
            svg.rect(left, y, plotWidth, laneHeight, fill: "#e8eef6", extra: "class=\"lane band\" data-stream=\"\(streams[j])\"")
            svg.text(left - 6, y + laneHeight * 0.7, streams.count > 1 ? "all ranks \(streams[j])" : "all ranks", size: 11, anchor: "end")
        }
        for (i, r) in ranks.enumerated() {
            for (j, s) in streams.enumerated() {
                let y = top + Double(bandLanes + i * streams.count + j) * laneHeight
                svg.rect(
                    left, y, plotWidth, laneHeight, fill: (i * streams.count + j) % 2 == 0 ? "#f4f4f4" : "#ffffff",
                    extra: "class=\"lane\" data-rank=\"\(r)\" data-stream=\"\(s)\"")
                if !condensed || (i % max(1, lanes / 32) == 0 && j == 0) {
                    let name = aggregate ? "slow rank \(r)" : "rank \(r)"
                    svg.text(left - 6, y + laneHeight * 0.7, streams.count > 1 ? "\(name) \(s)" : name, size: condensed ? 8 : 11, anchor: "end")
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
        let pad = condensed ? 0.5 : 3
        // The band: each kernel of the program over every rank.
        if aggregate {
            var occurrences: [Int32: [String: Int]] = [:]
            var groups: [String: (stream: StreamKind, kind: KernelKind, b: Bool, starts: [SimTime], ends: [SimTime])] = [:]
            var order: [String] = []
            for k in stepKernels.sorted(by: { ($0.rank, $0.start) < ($1.rank, $1.start) }) {
                let base = "\(k.stream)/\(k.kind)/\(k.layer)/\(k.microBatch)"
                let n = occurrences[k.rank, default: [:]][base, default: 0]
                occurrences[k.rank, default: [:]][base] = n + 1
                let key = base + "/\(n)"
                if groups[key] == nil {
                    order.append(key)
                    groups[key] = (k.stream, k.kind, k.microBatch == .b, [], [])
                }
                groups[key]!.starts.append(k.start)
                groups[key]!.ends.append(k.end)
            }
            for key in order {
                let g = groups[key]!
                let starts = g.starts.sorted(), ends = g.ends.sorted()
                let lo = starts.first!, hi = ends.last!, midStart = starts[starts.count / 2], midEnd = ends[ends.count / 2]
                guard visible(lo, hi) else { continue }
                let y = top + Double(streams.firstIndex(of: g.stream) ?? 0) * laneHeight + pad
                let h = laneHeight - 2 * pad
                let color = SVG.palette[g.kind.description] ?? "#999"
                let tip = "\(g.kind) over \(starts.count) ranks: start \(String(format: "%.3f", lo.micros))-\(String(format: "%.3f", starts.last!.micros)) us, end \(String(format: "%.3f", ends.first!.micros))-\(String(format: "%.3f", hi.micros)) us"
                svg.rect(x(lo), y, x(hi) - x(lo), h, fill: color, extra: "class=\"band\" fill-opacity=\"0.3\"", title: tip)
                if midEnd > midStart {
                    svg.rect(x(midStart), y + h * 0.2, x(midEnd) - x(midStart), h * 0.6, fill: color, extra: "class=\"median\"\(g.b ? " fill-opacity=\"0.6\"" : "")")
                }
            }
        }
        // Kernels and their waits; then the labels, each in the part of its kernel not hatched.
        var labels: [(Double, Double, String)] = []
        for k in kernels where visible(k.start, k.end) {
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
            var free = (x(k.start), x(k.end))
            if k.wait > .zero, let arrival = k.lastArrival {
                let w0 = x(arrival - k.wait), w1 = x(arrival)
                svg.rect(w0, y, w1 - w0, h, fill: "url(#hatch)", extra: "class=\"wait\"")
                // The wider side of the kernel outside the hatching.
                free = (w0 - free.0 >= free.1 - w1) ? (free.0, w0) : (w1, free.1)
            }
            if !condensed && free.1 - free.0 > 34 {
                labels.append((free.0 + 2, y + h * 0.68, k.kind.description + (k.microBatch == .b ? " B" : "")))
            }
        }
        for (lx, ly, text) in labels { svg.text(lx, ly, text, size: 9, extra: "fill=\"#111\"") }
        // The critical path: outlines and message arrows (between the ranks drawn).
        if let path {
            for link in pathLinks {
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

    /// Grouped bars: one stacked bar per run, the slowest rank's step broken down so that the
    /// stack is its end-to-end latency even when micro-batches overlap: compute by kind, the
    /// launch gaps, the barrier, and the communication overlap did not hide (`exposed_comm`,
    /// which is e2e minus compute and launch gaps). The communication hidden under compute
    /// (dispatch + combine + barrier - exposed) is drawn above it, dashed and hollow: time the
    /// rank's communication kernels ran that did not lengthen its step. In hook-mode decode
    /// the flights between a SEND and its RECV are in no kernel, so they show only through
    /// the RECV's exposed wait, and the hidden part is often nothing.
    public static func compare(_ columns: [(label: String, summary: RunSummary)], title: String) -> String {
        func barrierPart(_ r: RunSummary.RankRow) -> Double { min(r[.barrier], r[.exposedComm]) }
        func hidden(_ r: RunSummary.RankRow) -> Double { max(0, r[.dispatch] + r[.combine] + r[.barrier] - r[.exposedComm]) }
        let allParts: [(String, String, (RunSummary.RankRow) -> Double)] = [
            ("attention", "#4e79a7", { $0[.attention] }), ("shared", "#59a14f", { $0[.shared] }), ("dense", "#b07aa1", { $0[.dense] }),
            ("gemm", "#edc948", { $0[.gemm] }), ("launch gaps", "#bab0ac", { $0[.launchGaps] }), ("barrier", "#9c755f", barrierPart),
            ("exposed communication", "#e15759", { $0[.exposedComm] - barrierPart($0) }),
        ]
        let rows = columns.map { c -> (String, RunSummary.RankRow?, Double) in
            let step = c.summary.step_latencies_us.firstIndex(of: c.summary.step_latency_us) ?? 0
            let row = c.summary.per_rank.filter { $0.step == step }.max { $0[.e2e] < $1[.e2e] }
            return (c.label, row, c.summary.step_latency_us)
        }
        // Barrier and launch-gap segments (and their legend) only where a run has them.
        let optional: Set<String> = ["barrier", "launch gaps", "dense", "shared"]
        let parts = allParts.filter { p in !optional.contains(p.0) || rows.contains { r in r.1.map { p.2($0) != 0 } ?? false } }
        let anyHidden = rows.contains { r in r.1.map { hidden($0) > 0 } ?? false }
        let maxValue =
            rows.map { r in max(r.2, r.1.map { row in parts.map { $0.2(row) }.reduce(0, +) + hidden(row) } ?? 0) }.max() ?? 1
        // Labels go under their bars on up to three lines ("run 1:", the scenario, "[schedule]").
        func labelLines(_ label: String) -> [String] {
            label.replacingOccurrences(of: ": ", with: ":\n").replacingOccurrences(of: " [", with: "\n[").split(separator: "\n").map(String.init)
        }
        let longest = Double(rows.flatMap { labelLines($0.0) }.map(\.count).max() ?? 10)
        let barWidth = 70.0, left = 80.0, top = 72.0, plotHeight = 380.0
        let gap = max(50.0, longest * 6.2 - barWidth + 10)
        let width = max(700, left + Double(rows.count) * (barWidth + gap) + 220)
        var svg = SVG(width: width, height: top + plotHeight + 110)
        svg.text(left, 25, title, size: 15, extra: "font-weight=\"bold\"")
        svg.text(left, 42, "slowest rank of the slowest step: the stack adds up to its latency (black tick: the step's);", size: 11)
        svg.text(left, 55, "dashed above it: communication hidden under compute", size: 11)
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
                if hidden(r) > 0 {
                    let h = hidden(r) / (maxValue * 1.05) * plotHeight
                    svg.rect(
                        x + 6, y - h, barWidth - 12, h, fill: "none", extra: "class=\"hidden\" stroke=\"#e15759\" stroke-width=\"1.5\" stroke-dasharray=\"4,2\"",
                        title: "\(row.0): communication hidden under compute \(String(format: "%.3f", hidden(r))) us")
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
        if anyHidden {
            svg.rect(width - 200, ly, 12, 12, fill: "none", extra: "stroke=\"#e15759\" stroke-width=\"1.5\" stroke-dasharray=\"3,2\"")
            svg.text(width - 182, ly + 10, "hidden communication")
            ly += 20
        }
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
