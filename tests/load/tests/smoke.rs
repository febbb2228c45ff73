//! A short run of every benchmark scenario, so the load generator keeps working. The numbers
//! of a debug build mean nothing; the run fails only if a scenario cannot run, loses or
//! duplicates a delivery.

use std::process::Command;

#[test]
fn every_scenario_runs() {
    let nats = std::env::var_os("SIGNALBOX_NATS_SERVER").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/nats/bin/nats-server")
    });
    let output = Command::new(env!("CARGO_BIN_EXE_signalbox-load"))
        .arg("--signalbox")
        .arg(signalbox_test_support::signalbox_binary())
        .arg("--nats-server")
        .arg(nats)
        .args(["--quick", "all"])
        .output()
        .expect("run signalbox-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "signalbox-load failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for scenario in [
        "idle-smoke",
        "fanout-smoke",
        "groups-smoke",
        "rest-smoke",
        "cluster-smoke",
        "hundred-k-smoke",
        "baseline-smoke",
        "presence-smoke",
    ] {
        assert!(stdout.contains(&format!("({scenario})")), "{scenario} reported:\n{stdout}");
    }
    assert!(stdout.contains("lost / duplicated deliveries"), "{stdout}");
}
