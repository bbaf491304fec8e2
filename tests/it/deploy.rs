//! The deployment files agree with the binary: `fly.toml`'s release command
//! and process groups are commands the binary accepts, its internal port is
//! the port the image binds, its health checks are routes that answer, and
//! the Dockerfile runs the same binary on the same port. (Fly's schema in
//! SchemaStore predates `http_service` and `processes`, so it cannot check
//! these; `bash scripts/check-fly-toml.sh` validates what it does cover.)

use std::process::Command;

use podforge::testing::TestApp;

fn fly() -> toml::Table {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fly.toml")).unwrap();
    text.parse().unwrap()
}

/// Runs `podforge <args> --help`: exit 0 only when clap accepts every argument.
fn accepted(args: &str) -> bool {
    let mut argv: Vec<&str> = args.split_whitespace().collect();
    argv.push("--help");
    let out = Command::new(env!("CARGO_BIN_EXE_podforge"))
        .args(&argv)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn release_command_and_process_groups_are_commands_of_the_binary() {
    let fly = fly();
    let release = fly["deploy"]["release_command"].as_str().unwrap();
    assert_eq!(release, "migrate");
    assert!(accepted(release), "podforge {release}");
    let processes = fly["processes"].as_table().unwrap();
    assert!(processes.contains_key("web") && processes.contains_key("worker"));
    for (group, command) in processes {
        let command = command.as_str().unwrap();
        assert!(accepted(command), "process group {group}: podforge {command}");
    }
    // The check itself can fail: a flag the binary does not know is refused.
    assert!(!accepted("serve --no-such-flag"));
    let http = fly["http_service"].as_table().unwrap();
    for group in http["processes"].as_array().unwrap() {
        assert!(
            processes.contains_key(group.as_str().unwrap()),
            "{group:?} is a process group"
        );
    }
}

#[test]
fn internal_port_is_the_port_the_image_binds() {
    let fly = fly();
    let port = fly["http_service"]["internal_port"].as_integer().unwrap();
    let bind = fly["env"]["PODFORGE_BIND"].as_str().unwrap();
    assert_eq!(bind.rsplit(':').next().unwrap().parse::<i64>().unwrap(), port);
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("PODFORGE_BIND={bind}")),
        "Dockerfile binds {bind}"
    );
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["podforge"]"#));
}

#[tokio::test]
async fn health_checks_are_routes_that_answer() {
    let fly = fly();
    let app = TestApp::new().await;
    let checks = fly["http_service"]["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for check in checks {
        let path = check["path"].as_str().unwrap();
        let method = check["method"].as_str().unwrap_or("GET");
        assert_eq!(method, "GET");
        let response = app.http.get(format!("http://{}{path}", app.addr)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[test]
fn dockerfile_and_runtime_root_share_one_package_list() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/runtime-root.sh")).unwrap();
    for text in [&dockerfile, &script] {
        assert!(text.contains("scripts/runtime-packages.txt"));
    }
    assert!(
        !dockerfile.contains("install -y --no-install-recommends ca-certificates"),
        "packages listed in one place"
    );
}
