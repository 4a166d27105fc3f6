//! The runnable image (`scripts/build-image.sh`, which the test command runs first) starts as a
//! container on the real Docker Engine, answers `/healthz`, and Docker's own HEALTHCHECK calls it healthy.

use std::time::{Duration, Instant};

use crate::support::docker::{LOCAL_IMAGE as IMAGE, cli as docker, require_local_image};

/// Removes the container, and the anonymous volume of its `/data`, however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.0]);
    }
}

#[test]
fn the_local_image_runs_and_answers_healthz() {
    require_local_image();
    let inspect = docker(&["image", "inspect", IMAGE, "--format", "{{.Config.User}}"]);
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "65532:65532",
        "runs as non-root"
    );

    // Host networking: the container's server is reached on loopback, like every peer in these tests.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let name = format!("hwtest-image-{}-{port}", std::process::id());
    let listen = format!("HARVEN_WATCHDOG__SERVER__LISTEN=127.0.0.1:{port}");
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        &listen,
        "--health-interval",
        "1s",
        "--health-start-period",
        "0s",
        IMAGE,
    ]);
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _cleanup = Container(name.clone());

    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        match get(port, "/healthz") {
            Some(body) => break body,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => {
                let logs = docker(&["logs", &name]);
                panic!(
                    "no /healthz answer; container logs:\n{}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    };
    assert_eq!(body, "ok\n");
    assert_eq!(
        get(port, "/readyz").as_deref(),
        Some("ready\nrole: solo\n"),
        "/data is writable by the image's user; SQLite: the only replica"
    );

    // Docker's HEALTHCHECK runs `harven-watchdog healthcheck` inside the container.
    let status = loop {
        let out = docker(&["inspect", "--format", "{{.State.Health.Status}}", &name]);
        let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if status != "starting" || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, "healthy");
}

/// `GET path` on loopback; `Some(body)` on a 200.
fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .filter(|code| *code == "200")?;
    Some(body.to_owned())
}
