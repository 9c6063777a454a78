/// A GPU rank of the expert-parallel group, `0 ..< N`.
///
/// A distinct type so that a rank can never be passed where an expert is expected.
public struct RankID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ value: Int) { self.rawValue = Int32(value) }
    public var index: Int { Int(rawValue) }
    public static func < (a: RankID, b: RankID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "rank \(rawValue)" }
}

/// A physical expert slot, `0 ..< E`.
public struct ExpertID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ value: Int) { self.rawValue = Int32(value) }
    public var index: Int { Int(rawValue) }
    public static func < (a: ExpertID, b: ExpertID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "expert \(rawValue)" }
}

/// One of the (at most two) micro-batches of a step: `A` is each rank's first
/// `ceil(T_r / 2)` tokens, `B` the rest. Single-micro-batch schedules use only `A`.
public enum MicroBatch: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case a = 0
    case b = 1
    public var description: String { self == .a ? "A" : "B" }
}
