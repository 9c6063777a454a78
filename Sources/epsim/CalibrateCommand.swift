import ArgumentParser
import EPSim
import Foundation

/// `epsim calibrate`: DeepEP's published low-latency table against the simulation.
///
/// ```
/// $ epsim calibrate                                  # the comparison table
/// $ epsim calibrate --markdown docs/validation.md    # regenerate the docs page
/// $ epsim calibrate --fit                            # search the h800 parameters
/// ```
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate", abstract: "Compare the simulation with DeepEP's published low-latency table (and fit the h800 preset).")

    @Option(help: "Folder of the calibration scenarios.")
    var scenarios = "Scenarios/calibration"

    @Flag(help: "Search the h800 network and kernel-cost parameters that fit the table best.")
    var fit = false

    @Option(help: "Write the comparison as Markdown to this path.")
    var markdown: String?

    func run() throws {
        let hardware: Hardware
        let rows: [DeepEPCalibration.Row]
        do {
            if fit {
                (hardware, rows) = try DeepEPCalibration.fit(directory: scenarios)
            } else {
                hardware = .h800
                rows = try DeepEPCalibration.run(directory: scenarios)
            }
        } catch let error as ScenarioError {
            printError("error: \(error)")
            throw ExitCode(65)
        }
        let table = rows.map { r in
            [
                String(r.ep), String(r.experts), RunReport.us(r.published.dispatchMicros), RunReport.us(r.dispatchMicros),
                String(format: "%+.1f%%", 100 * r.dispatchError), RunReport.us(r.published.combineMicros), RunReport.us(r.combineMicros),
                String(format: "%+.1f%%", 100 * r.combineError),
            ]
        }
        print(
            TextTable.render(
                header: ["ep", "experts", "dispatch_pub_us", "dispatch_sim_us", "error", "combine_pub_us", "combine_sim_us", "error"], rows: table),
            terminator: "")
        print(String(format: "worst error: %.1f%%", 100 * DeepEPCalibration.worstError(rows)))
        if fit { print("fitted h800: \(hardware)") }
        if let markdown {
            try DeepEPCalibration.markdown(rows, hardware: hardware).write(toFile: markdown, atomically: true, encoding: .utf8)
            print("wrote \(markdown)")
        }
    }
}
