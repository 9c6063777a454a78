/// A fixed-size table of `T` that the engine owns alone: element access is a pointer
/// offset, with none of the copy-on-write uniqueness check an `Array` stored in the engine
/// pays on every write (the receive slots take one write per flow, 15 M in an EP 256
/// decode step).
///
/// Non-copyable, so it has one owner and frees its memory when that owner goes away. Indices
/// are checked (`precondition`), as an `Array`'s are.
struct FixedTable<T>: ~Copyable {
    /// The first element; fixed for the table's life, so a hot loop may read it once.
    let base: UnsafeMutablePointer<T>
    let count: Int

    init(repeating value: T, count: Int) {
        base = .allocate(capacity: count)
        base.initialize(repeating: value, count: count)
        self.count = count
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    @inline(__always) subscript(i: Int) -> T {
        unsafeAddress {
            precondition(UInt(bitPattern: i) < UInt(bitPattern: count), "FixedTable index out of range")
            return UnsafePointer(base + i)
        }
        nonmutating unsafeMutableAddress {
            precondition(UInt(bitPattern: i) < UInt(bitPattern: count), "FixedTable index out of range")
            return base + i
        }
    }
}
