import Foundation

/// `docs/validation.md`: every comparison of the simulation with measurements, generated.
public enum ValidationPage {
    /// Writes the page.
    public static func write(to path: String, scenarios: String) throws {
        let rows = try DeepEPCalibration.run(directory: scenarios)
        try DeepEPCalibration.markdown(rows, hardware: .h800).write(toFile: path, atomically: true, encoding: .utf8)
    }
}
