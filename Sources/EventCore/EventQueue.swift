/// The future-event list of a discrete-event simulation: a binary min-heap ordered by
/// time, then by insertion order.
///
/// Equal-time events therefore come out first-in, first-out, which makes every run
/// deterministic without relying on payload comparison. Payloads are stored inline
/// (value types, no boxing), so pushing and popping allocate nothing once the heap's
/// storage has grown to the simulation's working size.
///
/// ```swift
/// var q = EventQueue<Int>()
/// q.push(7, at: SimTime(micros: 2))
/// q.push(3, at: SimTime(micros: 1))
/// q.pop()?.payload   // 3
/// ```
public struct EventQueue<Payload> {
    @usableFromInline struct Entry {
        @usableFromInline var time: Int64
        @usableFromInline var sequence: UInt64
        @usableFromInline var payload: Payload

        @inlinable init(time: Int64, sequence: UInt64, payload: Payload) {
            self.time = time
            self.sequence = sequence
            self.payload = payload
        }

        @inlinable func precedes(_ other: Entry) -> Bool {
            time < other.time || (time == other.time && sequence < other.sequence)
        }
    }

    @usableFromInline var heap: [Entry] = []
    @usableFromInline var nextSequence: UInt64 = 0

    public init(reservingCapacity capacity: Int = 0) {
        heap.reserveCapacity(capacity)
    }

    /// Number of pending events.
    @inlinable public var count: Int { heap.count }
    @inlinable public var isEmpty: Bool { heap.isEmpty }

    /// The time of the earliest event, if any. - Complexity: O(1).
    @inlinable public var nextTime: SimTime? { heap.first.map { SimTime(picos: $0.time) } }

    /// The earliest event without removing it. - Complexity: O(1).
    @inlinable public var first: (time: SimTime, payload: Payload)? {
        heap.first.map { (SimTime(picos: $0.time), $0.payload) }
    }

    /// Removes the earliest event (use after ``first``). - Complexity: O(log n).
    @inlinable public mutating func removeFirst() {
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
    }

    /// Schedules `payload` at `time`. - Complexity: O(log n).
    @inlinable public mutating func push(_ payload: Payload, at time: SimTime) {
        heap.append(Entry(time: time.picos, sequence: nextSequence, payload: payload))
        nextSequence &+= 1
        siftUp(heap.count - 1)
    }

    /// Removes and returns the earliest event. - Complexity: O(log n).
    @inlinable public mutating func pop() -> (time: SimTime, payload: Payload)? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return (SimTime(picos: top.time), top.payload)
    }

    @inlinable mutating func siftUp(_ start: Int) {
        var child = start
        let item = heap[child]
        while child > 0 {
            let parent = (child - 1) / 2
            guard item.precedes(heap[parent]) else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = item
    }

    @inlinable mutating func siftDown(_ start: Int) {
        let n = heap.count
        var parent = start
        let item = heap[parent]
        while true {
            var child = 2 * parent + 1
            guard child < n else { break }
            if child + 1 < n && heap[child + 1].precedes(heap[child]) { child += 1 }
            guard heap[child].precedes(item) else { break }
            heap[parent] = heap[child]
            parent = child
        }
        heap[parent] = item
    }
}

/// A queue is a plain value: sendable when its payloads are.
extension EventQueue: Sendable where Payload: Sendable {}
extension EventQueue.Entry: Sendable where Payload: Sendable {}
