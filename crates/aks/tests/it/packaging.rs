use std::path::Path;
use std::process::Command;

#[test]
fn the_function_app_zip_has_host_json_the_function_and_an_executable_handler() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("kaf-zip-{}", std::process::id()));
    let zip = dir.join("app.zip");
    let status = Command::new("python3")
        .arg(root.join("templates/azure-functions/package.py"))
        .args(["--binary", env!("CARGO_BIN_EXE_aks-handler"), "--out"])
        .arg(&zip)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    // List entries and Unix modes with the same standard library that Azure's deployment unpacks with.
    let listing = Command::new("python3")
        .args(["-c", "import sys,zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename, oct(i.external_attr >> 16), i.create_system)"])
        .arg(&zip)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(entries.len(), 3, "{listing}");
    // create_system 3 (Unix): the mode bits count, whichever OS built the zip.
    assert!(entries.contains(&"aks-handler 0o100755 3"), "{listing}");
    assert!(entries.iter().any(|e| e.starts_with("host.json ")));
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("KubeAudit/function.json "))
    );
    // The shipped templates name the handler and the binding the handler reads.
    let host: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("templates/azure-functions/host.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "aks-handler"
    );
    let function: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("templates/azure-functions/KubeAudit/function.json"))
            .unwrap(),
    )
    .unwrap();
    let trigger = &function["bindings"][0];
    assert_eq!(
        (
            trigger["type"].as_str(),
            trigger["name"].as_str(),
            trigger["cardinality"].as_str(),
            trigger["dataType"].as_str()
        ),
        (
            Some("eventHubTrigger"),
            Some("events"),
            Some("many"),
            Some("string")
        )
    );
    assert_eq!(function["bindings"][1]["name"], "failover");
    assert!(
        function["bindings"][1]["path"]
            .as_str()
            .unwrap()
            .contains("{rand-guid}")
    );
    assert!(function["retry"]["maxRetryCount"].as_i64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(dir);
}
