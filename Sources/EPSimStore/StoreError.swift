import GRDB

/// Why the run database could not be used: says which file and what to do about it.
///
/// Carries the SQLite result code when SQLite produced the failure (as GRDB's own errors do).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file cannot be opened or created (missing folder, no permission, read-only).
        case cannotOpen = "cannot-open"
        /// Nothing to read: no file at the path, or an empty one.
        case noDatabase = "no-database"
        /// The file is not an SQLite database, or is damaged.
        case notADatabase = "not-a-database"
        /// An SQLite database that EPSim did not create: refused, so it is never altered.
        case foreignDatabase = "foreign-database"
        /// A database written by a newer EPSim (an unknown schema version): refused, left untouched.
        case newerSchema = "newer-schema"
        /// A stored value that EPSim cannot have written (wrong type, a time out of range):
        /// the database was edited or damaged.
        case badValue = "bad-value"
        /// `db merge` was given its target as a source.
        case sameFile = "same-file"
        /// No stored run has that id.
        case unknownRun = "unknown-run"
        /// Any other SQLite failure.
        case sqlite
    }

    public var code: Code
    public var path: String
    public var message: String
    public var sqliteCode: Int32?

    public init(_ code: Code, path: String, message: String, sqliteCode: Int32? = nil) {
        self.code = code
        self.path = path
        self.message = message
        self.sqliteCode = sqliteCode
    }

    public var description: String {
        "\(path): \(message)" + (sqliteCode.map { " (SQLite code \($0))" } ?? "")
    }

    /// Classifies a GRDB error raised while working on `path`.
    static func wrap(_ error: Error, path: String, doing action: String) -> StoreError {
        if let e = error as? StoreError { return e }
        if let db = error as? DatabaseError {
            let code = db.resultCode
            switch code {
            case .SQLITE_NOTADB, .SQLITE_CORRUPT:
                return StoreError(
                    .notADatabase, path: path, message: "is not an SQLite database, or is damaged; pass another --db path", sqliteCode: code.rawValue)
            case .SQLITE_MISMATCH:
                return StoreError(
                    .badValue, path: path, message: "could not \(action): \(db.message ?? "a value of the wrong type"); the database was edited or damaged",
                    sqliteCode: code.rawValue)
            case .SQLITE_READONLY:
                return StoreError(
                    .cannotOpen, path: path,
                    message:
                        "cannot \(action): the file or its folder is read-only (\(db.message ?? "read-only")); nothing was written: check its permissions or pass another --db path",
                    sqliteCode: code.rawValue)
            case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
                return StoreError(
                    .cannotOpen, path: path,
                    message: "cannot \(action): \(db.message ?? "permission denied or folder missing"); check the path and its permissions",
                    sqliteCode: code.rawValue)
            default:
                return StoreError(.sqlite, path: path, message: "could not \(action): \(db.message ?? "\(db)")", sqliteCode: code.rawValue)
            }
        }
        if error is DecodingError || error is RowDecodingError {
            return StoreError(.badValue, path: path, message: "could not \(action): \(error); the database was edited or damaged")
        }
        return StoreError(.sqlite, path: path, message: "could not \(action): \(error)")
    }
}
