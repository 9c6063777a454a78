import Foundation

/// A tiny SVG writer: plain strings, every number with fixed precision so that the same
/// input always gives the same bytes.
struct SVG {
    var body = ""
    let width: Double
    let height: Double

    static func n(_ x: Double) -> String { String(format: "%.2f", x) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    mutating func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, extra: String = "", title: String? = nil) {
        body += "<rect x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" width=\"\(Self.n(max(w, 0)))\" height=\"\(Self.n(h))\" fill=\"\(fill)\" \(extra)"
        if let title { body += "><title>\(Self.escape(title))</title></rect>\n" } else { body += "/>\n" }
    }

    mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1, extra: String = "") {
        body +=
            "<line x1=\"\(Self.n(x1))\" y1=\"\(Self.n(y1))\" x2=\"\(Self.n(x2))\" y2=\"\(Self.n(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(Self.n(width))\" \(extra)/>\n"
    }

    mutating func text(_ x: Double, _ y: Double, _ s: String, size: Double = 11, anchor: String = "start", extra: String = "") {
        body += "<text x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" font-size=\"\(Self.n(size))\" text-anchor=\"\(anchor)\" \(extra)>\(Self.escape(s))</text>\n"
    }

    mutating func raw(_ s: String) { body += s + "\n" }

    var document: String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Self.n(width))\" height=\"\(Self.n(height))\" viewBox=\"0 0 \(Self.n(width)) \(Self.n(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
            + "<rect x=\"0\" y=\"0\" width=\"\(Self.n(width))\" height=\"\(Self.n(height))\" fill=\"white\"/>\n" + body + "</svg>\n"
    }

    /// A "nice" axis step (1, 2 or 5 x 10^k) giving about `count` ticks over `span`.
    static func tickStep(_ span: Double, count: Double = 8) -> Double {
        guard span > 0 else { return 1 }
        let raw = span / count
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw { return m * p }
        return 10 * p
    }

    /// Colours of kernel kinds (Tableau 10).
    static let palette = [
        "ATTN0": "#4e79a7", "ATTN1": "#76b7b2", "SHARED": "#59a14f", "MLP": "#edc948", "DENSE": "#b07aa1",
        "SEND-D": "#f28e2b", "RECV-D": "#f28e2b", "DISPATCH": "#f28e2b", "SEND-C": "#e15759", "RECV-C": "#e15759",
        "COMBINE": "#e15759", "BARRIER": "#9c755f",
    ]
}
