import EPSim
import EventCore
import Foundation

/// A serving run's rows as CSV (times in microseconds, `_us` columns; empty cells for what
/// the run did not reach), one file per table of the database.
public enum ServingExport {
    static func us(_ t: SimTime?) -> String { t.map { String(format: "%.3f", $0.micros) } ?? "" }

    public static func stepsCSV(_ r: ServingResult) -> String {
        var out = "step,start_us,end_us,duration_us,balanced_us,requests,tokens,kv_tokens,queued,admitted,finished,output_tokens\n"
        for s in r.steps {
            out +=
                "\(s.step),\(us(s.start)),\(us(s.end)),\(us(s.duration)),\(us(s.balanced)),\(s.requests),\(s.tokens),\(s.kvTokens),\(s.queued),\(s.admitted),\(s.finished),\(s.outputTokens)\n"
        }
        return out
    }

    public static func rankStepsCSV(_ r: ServingResult) -> String {
        var out = "step,rank,requests,kv_tokens,start_us,end_us,attention_us,dispatch_wait_us,combine_wait_us\n"
        for x in r.rankSteps {
            out +=
                "\(x.step),\(x.rank),\(x.requests),\(x.kvTokens),\(us(x.start)),\(us(x.end)),\(us(x.attention)),\(us(x.dispatchWait)),\(us(x.combineWait))\n"
        }
        return out
    }

    public static func requestsCSV(_ r: ServingResult) -> String {
        var out = "request,rank,arrival_us,input_tokens,output_tokens,generated,rejected,admitted_step,decode_start_us,first_token_us,finish_us,tpot_us,queue_us\n"
        for q in r.requests {
            out +=
                "\(q.request.id),\(q.rank),\(us(q.request.arrival)),\(q.request.inputTokens),\(q.request.outputTokens),\(q.generated),\(q.rejected ? 1 : 0),\(q.admittedStep.map(String.init) ?? ""),\(us(q.decodeStart)),\(us(q.firstToken)),\(us(q.finish)),\(us(q.tpot)),\(us(q.queueing))\n"
        }
        return out
    }
}

/// Pictures of serving runs (SVG): panels of lines against a shared x axis.
public enum ServingPlot {
    struct Series {
        var name: String
        var color: String
        var points: [(Double, Double)]
        var dashed = false
    }

    /// Where an axis starts: at zero (counts, shares), or at the data (a TPOT distribution
    /// or step times in a narrow band, whose differences a zero baseline would flatten).
    enum AxisStart { case zero, data }

    static let colors = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]

    /// A tick label: as many decimals as the tick step needs.
    static func tickLabel(_ v: Double, step: Double) -> String {
        let decimals = step >= 1 ? 0 : min(6, Int((-log10(step)).rounded(.up)))
        return String(format: "%.\(decimals)f", v)
    }

    /// An axis range: from zero or from the data (padded by 5% of the span, on tick
    /// multiples), to the data's largest value padded likewise.
    static func range(_ values: [Double], start: AxisStart) -> (lo: Double, hi: Double) {
        let lo0 = values.min()!, hi0 = values.max()!
        if start == .zero || lo0 == hi0 {
            let lo = min(0, lo0)
            let hi = hi0 > lo ? hi0 + (hi0 - lo) * 0.05 : lo + 1
            return (lo, hi)
        }
        let pad = (hi0 - lo0) * 0.05
        let step = SVG.tickStep(hi0 - lo0 + 2 * pad, count: 10)
        return ((max(lo0 - pad, lo0 >= 0 ? 0 : -.infinity) / step).rounded(.down) * step, hi0 + pad)
    }

    /// One panel at (`left`, `top`) of `w` x `h`: lines, ticks, a legend at the right, and
    /// optionally a dashed vertical `marker` (the end of warm-up).
    static func panel(
        _ svg: inout SVG, left: Double, top: Double, w: Double, h: Double, title: String, xLabel: String, series: [Series],
        xStart: AxisStart = .zero, yStart: AxisStart = .zero, marker: (x: Double, label: String)? = nil
    ) {
        let all = series.flatMap(\.points)
        svg.text(left, top - 10, title, size: 12, extra: "font-weight=\"bold\"")
        guard !all.isEmpty else {
            svg.text(left + w / 2, top + h / 2, "nothing to draw", anchor: "middle")
            return
        }
        let (xmin, xmax) = range(all.map(\.0), start: xStart)
        let (ymin, ymax) = range(all.map(\.1), start: yStart)
        func px(_ v: Double) -> Double { left + (v - xmin) / (xmax - xmin) * w }
        func py(_ v: Double) -> Double { top + h - (min(max(v, ymin), ymax) - ymin) / (ymax - ymin) * h }
        let ytick = SVG.tickStep(ymax - ymin, count: 5)
        var v = (ymin / ytick).rounded(.up) * ytick
        while v <= ymax {
            svg.line(left, py(v), left + w, py(v), stroke: "#ddd", width: 0.6)
            svg.text(left - 6, py(v) + 4, tickLabel(v, step: ytick), size: 10, anchor: "end")
            v += ytick
        }
        let xtick = SVG.tickStep(xmax - xmin, count: 8)
        var x = (xmin / xtick).rounded(.up) * xtick
        while x <= xmax {
            svg.line(px(x), top + h, px(x), top + h + 4, stroke: "#333")
            svg.text(px(x), top + h + 16, tickLabel(x, step: xtick), size: 10, anchor: "middle")
            x += xtick
        }
        svg.line(left, top + h, left + w, top + h, stroke: "#333")
        svg.line(left, top, left, top + h, stroke: "#333")
        svg.text(left + w / 2, top + h + 32, xLabel, size: 11, anchor: "middle")
        if let marker, marker.x > xmin, marker.x < xmax {
            svg.line(px(marker.x), top, px(marker.x), top + h, stroke: "#888", width: 1, extra: "stroke-dasharray=\"3,3\"")
            svg.text(px(marker.x) + 4, top + 10, marker.label, size: 9, extra: "fill=\"#666\"")
        }
        for (i, s) in series.enumerated() {
            // At most ~1000 points a line: every k-th, the last kept.
            let k = max(1, s.points.count / 1000)
            var pts = stride(from: 0, to: s.points.count, by: k).map { s.points[$0] }
            if let last = s.points.last, pts.last.map({ $0 != last }) ?? true { pts.append(last) }
            svg.raw(
                "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.6\"\(s.dashed ? " stroke-dasharray=\"5,3\"" : "") points=\""
                    + pts.map { "\(SVG.n(px($0.0))),\(SVG.n(py($0.1)))" }.joined(separator: " ") + "\"/>")
            svg.line(left + w + 16, top + Double(i) * 18 + 6, left + w + 34, top + Double(i) * 18 + 6, stroke: s.color, width: 2, extra: s.dashed ? "stroke-dasharray=\"5,3\"" : "")
            svg.text(left + w + 40, top + Double(i) * 18 + 10, legendName(s.name), size: 10)
        }
    }

    /// The most characters a legend entry shows in the space right of a panel (about 6 px
    /// each at size 10); a longer one keeps its start and its end around an ellipsis (labels
    /// of one --vary key differ at the end: `policy={weights: ...kv: 2}}`).
    static let legendCharacters = 36

    static func legendName(_ name: String) -> String {
        guard name.count > legendCharacters else { return name }
        let head = (legendCharacters - 1) / 2
        return String(name.prefix(head)) + "\u{2026}" + String(name.suffix(legendCharacters - 1 - head))
    }

    /// The warm-up boundary as a panel marker (nil without warm-up).
    static func warmupMarker(_ r: ServingResult) -> (x: Double, label: String)? {
        r.config.warmupSteps > 0 ? (Double(r.config.warmupSteps), "counted from here") : nil
    }

    /// Per step: the most, mean and fewest requests per rank; the same for KV tokens
    /// (thousands); the step time against the balanced counterfactual's, and the share of it
    /// lost to imbalance (its axis at the data, so a few percent shows). The end of warm-up
    /// is marked.
    public static func single(_ r: ServingResult, title: String) -> String {
        let n = r.ranks
        var req: [[(Double, Double)]] = [[], [], []]
        var kv: [[(Double, Double)]] = [[], [], []]
        for s in r.steps {
            let rows = r.rankSteps[(s.step * n)..<((s.step + 1) * n)]
            let q = rows.map { Double($0.requests) }
            let k = rows.map { Double($0.kvTokens) / 1000 }
            let x = Double(s.step)
            req[0].append((x, q.max()!))
            req[1].append((x, q.reduce(0, +) / Double(n)))
            req[2].append((x, q.min()!))
            kv[0].append((x, k.max()!))
            kv[1].append((x, k.reduce(0, +) / Double(n)))
            kv[2].append((x, k.min()!))
        }
        let names = ["most (a rank)", "mean", "fewest"]
        let left = 80.0, w = 640.0, h = 200.0
        let marker = warmupMarker(r)
        let panels = r.config.counterfactual ? 4.0 : 3.0
        var svg = SVG(width: left + w + 200, height: panels * (h + 80) + 50)
        svg.text(left, 24, "\(title): \(r.config.policy.name), \(n) ranks", size: 15, extra: "font-weight=\"bold\"")
        panel(&svg, left: left, top: 70, w: w, h: h, title: "requests per rank", xLabel: "step",
              series: (0..<3).map { Series(name: names[$0], color: colors[$0], points: req[$0]) }, marker: marker)
        panel(&svg, left: left, top: 70 + h + 80, w: w, h: h, title: "KV-cache tokens per rank (thousands)", xLabel: "step",
              series: (0..<3).map { Series(name: names[$0], color: colors[$0], points: kv[$0]) }, marker: marker)
        var time = [Series(name: "step", color: colors[0], points: r.steps.map { (Double($0.step), $0.duration.micros) })]
        if r.config.counterfactual {
            time.append(Series(name: "balanced", color: colors[2], points: r.steps.map { (Double($0.step), ($0.balanced ?? .zero).micros) }, dashed: true))
        }
        panel(&svg, left: left, top: 70 + 2 * (h + 80), w: w, h: h, title: "step time (us)", xLabel: "step", series: time, marker: marker)
        if r.config.counterfactual {
            // Per step, noisy: the counterfactual draws its own routing (docs/model.md).
            let lost = r.steps.compactMap { s in s.balanced.map { (Double(s.step), s.duration > .zero ? 100 * (1 - $0.micros / s.duration.micros) : 0) } }
            panel(
                &svg, left: left, top: 70 + 3 * (h + 80), w: w, h: h, title: "step time lost to imbalance (%): 1 - balanced / step", xLabel: "step",
                series: [Series(name: "per step", color: colors[3], points: lost)], yStart: .data, marker: marker)
        }
        return svg.document
    }

    /// Per run: the distribution of TPOT over the counted requests (share at or below; the
    /// axis spans the data), and per counted step the largest rank's KV tokens over the
    /// mean rank's (warm-up left out: its first steps, one request on one rank, would set
    /// the scale).
    public static func compare(_ runs: [(label: String, result: ServingResult)], title: String) -> String {
        let left = 80.0, w = 640.0, h = 240.0
        var svg = SVG(width: left + w + 260, height: 2 * (h + 80) + 50)
        svg.text(left, 24, title, size: 15, extra: "font-weight=\"bold\"")
        var cdf: [Series] = []
        var ratio: [Series] = []
        for (i, run) in runs.enumerated() {
            let warm = run.result.config.warmupSteps
            let tpots = run.result.requests.filter { ($0.admittedStep ?? -1) >= warm }.compactMap(\.tpot).map(\.micros).sorted()
            let c = colors[i % colors.count]
            cdf.append(Series(name: run.label, color: c, points: tpots.enumerated().map { ($0.element, Double($0.offset + 1) / Double(tpots.count)) }))
            let n = run.result.ranks
            ratio.append(
                Series(
                    name: run.label, color: c,
                    points: run.result.steps.filter { $0.step >= warm }.map { s in
                        let k = run.result.rankSteps[(s.step * n)..<((s.step + 1) * n)].map { Double($0.kvTokens) }
                        let mean = k.reduce(0, +) / Double(n)
                        return (Double(s.step), mean > 0 ? k.max()! / mean : 1)
                    }))
        }
        panel(&svg, left: left, top: 70, w: w, h: h, title: "TPOT: share of counted requests at or below", xLabel: "TPOT (us)", series: cdf, xStart: .data)
        panel(
            &svg, left: left, top: 70 + h + 80, w: w, h: h, title: "KV-cache tokens: largest rank over the mean (counted steps)", xLabel: "step", series: ratio,
            xStart: .data, yStart: .data)
        return svg.document
    }
}
