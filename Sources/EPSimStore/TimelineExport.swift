import EPSim
import EventCore
import Foundation

/// Timeline exports: CSV for pandas and the `sqlite3` shell's friends, Chrome trace-event
/// JSON for Perfetto and chrome://tracing.
///
/// Times are written from integer picoseconds as microseconds with six decimals, so they
/// are exact, and the same run exported twice (or from memory and from the database) gives
/// identical bytes.
public enum TimelineExport {
    /// The CSV header; one row per kernel follows. Documented in `docs/database.md`.
    public static let csvHeader =
        "run_id,step,rank,layer,micro_batch,kind,stream,start_us,end_us,wait_us,bytes_out,bytes_in,tokens,blocker_rank,blame"

    /// `12.345678` for 12345678 ps: exact, locale-free.
    public static func micros(_ t: SimTime) -> String {
        let ps = t.picos
        let sign = ps < 0 ? "-" : ""
        let a = ps.magnitude
        let frac = String(a % 1_000_000)
        return sign + String(a / 1_000_000) + "." + String(repeating: "0", count: 6 - frac.count) + frac
    }

    /// The kernels as CSV (`runID` empty when the run was not stored).
    public static func csv(_ kernels: [KernelRecord], runID: Int64?) -> String {
        var out = csvHeader + "\n"
        out.reserveCapacity(kernels.count * 96)
        let id = runID.map(String.init) ?? ""
        for k in kernels {
            out += id + "," + String(k.step) + "," + String(k.rank) + "," + String(k.layer) + "," + k.microBatch.description + ","
            out += k.kind.description + "," + k.stream.description + "," + micros(k.start) + "," + micros(k.end) + ","
            out += micros(k.wait) + "," + String(k.bytesOut) + "," + String(k.bytesIn) + "," + String(k.tokens) + ","
            out += (k.blocker >= 0 ? String(k.blocker) : "") + "," + k.blameReason.description + "\n"
        }
        return out
    }

    /// Chrome trace-event JSON: one process per rank, one thread per stream, each kernel a
    /// complete ("X") event with its bytes, tokens and wait as args; the wait inside a RECV
    /// as a nested "wait" slice; and a flow arrow from the SEND of the rank whose message
    /// arrived last to the waiting RECV.
    public static func chromeTrace(_ kernels: [KernelRecord], ranks: Int, title: String) -> String {
        var out = "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":\"epsim\",\"run\":\"\(escape(title))\"},\"traceEvents\":[\n"
        var first = true
        func emit(_ event: String) {
            if !first { out += ",\n" }
            first = false
            out += event
        }
        for r in 0..<ranks {
            emit("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(r),\"args\":{\"name\":\"rank \(r)\"}}")
            emit("{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":\(r),\"args\":{\"sort_index\":\(r)}}")
            for s in [StreamKind.compute, .comm] {
                emit("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":\(r),\"tid\":\(s.rawValue),\"args\":{\"name\":\"\(s) stream\"}}")
            }
        }
        // The SEND that posted each waiting RECV's last message: where its blame arrow starts.
        let senders = BlameIndex(kernels)
        var flowID = 0
        for k in kernels {
            let tid = k.stream.rawValue
            var args = "\"step\":\(k.step),\"layer\":\(k.layer),\"micro_batch\":\"\(k.microBatch)\",\"bytes_out\":\(k.bytesOut),"
            args += "\"bytes_in\":\(k.bytesIn),\"tokens\":\(k.tokens),\"wait_us\":\(micros(k.wait))"
            if k.blocker >= 0 { args += ",\"blocker_rank\":\(k.blocker),\"blame\":\"\(k.blameReason)\"" }
            emit(
                "{\"name\":\"\(k.kind)\",\"cat\":\"\(category(k.kind))\",\"ph\":\"X\",\"pid\":\(k.rank),\"tid\":\(tid),\"ts\":\(micros(k.start)),\"dur\":\(micros(k.duration)),\"args\":{\(args)}}"
            )
            guard k.wait > .zero, let arrival = k.lastArrival else { continue }
            emit(
                "{\"name\":\"wait\",\"cat\":\"wait\",\"ph\":\"X\",\"pid\":\(k.rank),\"tid\":\(tid),\"ts\":\(micros(arrival - k.wait)),\"dur\":\(micros(k.wait)),\"args\":{\"blocker_rank\":\(k.blocker)}}"
            )
            guard k.blocker >= 0, let sender = senders.sender(of: k, on: k.blocker), let posted = sender.sendEnd else { continue }
            // Inside the sender's slice, so that viewers bind the arrow to it.
            let from = posted - SimTime(picos: min(1000, (posted - sender.start).picos / 2))
            flowID += 1
            emit(
                "{\"name\":\"last arrival\",\"cat\":\"blame\",\"ph\":\"s\",\"id\":\(flowID),\"pid\":\(sender.rank),\"tid\":\(sender.stream.rawValue),\"ts\":\(micros(from))}"
            )
            emit(
                "{\"name\":\"last arrival\",\"cat\":\"blame\",\"ph\":\"f\",\"bp\":\"e\",\"id\":\(flowID),\"pid\":\(k.rank),\"tid\":\(tid),\"ts\":\(micros(arrival))}"
            )
        }
        out += "\n]}\n"
        return out
    }

    static func category(_ kind: KernelKind) -> String {
        switch kind {
        case .attn0, .attn1: return "attention"
        case .shared: return "shared"
        case .mlp, .dense: return "gemm"
        case .sendDispatch, .recvDispatch, .dispatch: return "dispatch"
        case .sendCombine, .recvCombine, .combine: return "combine"
        case .barrier: return "barrier"
        }
    }

    /// `s` escaped for the inside of a JSON string (`CanonicalJSON.string` without its quotes).
    static func escape(_ s: String) -> String { String(CanonicalJSON.string(s).dropFirst().dropLast()) }
}
