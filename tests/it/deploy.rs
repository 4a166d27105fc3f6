//! The compose deployment (`deploy/compose.yaml` with `deploy/watchdog.toml`), run by Debian's
//! `docker-compose` (1.29, which `scripts/test.sh` installs) on the real Docker Engine, as an operator
//! would: the locally built image `harven-watchdog:local` joins a "stack" network beside a busybox
//! backend, watches it through the mounted socket, and mails the on-call when it turns unhealthy.
//!
//! What the test changes, through an override file and a config layer, and why: the secrets' files
//! (made here, random), the test labels (so a killed run's leftovers are cleaned up), a 1 s health
//! interval (the shipped 30 s would only slow the test), and the peers' addresses. Redis and the SMTP
//! server run on the host, bound to the network's gateway; the SMTP server requires the login from
//! the `smtp_password` secret. There is deliberately no Prometheus: its URL points at a closed port,
//! so that source fails (a reported state) and its rules stay unknown; the Docker rules do not need
//! it. The configuration maps the runbook's `backend` role to this test's backend container by name
//! (a test cannot own the name `harven-backend`; the Compose match is off, so other tests' replicas
//! stay out), and the runbook is the shipped one with the unhealthy-backend rule's `for` shortened
//! from 1 min to 1 s;
//! the image is the real one, on real time, so no manual clock is involved.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::InspectContainerOptions;

use crate::support::docker::{
    ContainerOptions, HEALTH_FILE, LOCAL_IMAGE, PID_LABEL, TEST_LABEL, TestContainer, TestNetwork,
    require_local_image,
};
use crate::support::redis::RedisServer;
use crate::support::smtp::{ReceivedMail, SmtpOptions, SmtpServer};
use crate::support::{free_port, wait_for_some};

/// The compose tool: Debian 12's `docker-compose` package (Compose v1.29, Compose specification).
const COMPOSE: &str = "docker-compose";

/// The compose service.
const SERVICE: &str = "harven-watchdog";

/// The secrets compose.yaml declares, each read through a `*_file` key of deploy/watchdog.toml.
const SECRETS: [&str; 3] = ["smtp_password", "supabase_key", "watchdog_api_token"];

/// Where compose.yaml mounts the configuration.
const CONFIG_IN_CONTAINER: &str = "/etc/harven-watchdog/watchdog.toml";

/// The SMTP login of deploy/watchdog.toml (its password is the `smtp_password` secret).
const SMTP_USER: &str = "watchdog";

/// Who the test's escalation L1 is.
const ONCALL: &str = "oncall@harven.test";

/// Generous: the image starts, the backend's health check fails twice, a page is sent.
const DEADLINE: Duration = Duration::from_secs(120);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Compose project of `deploy/compose.yaml` and a test override, brought down with its volumes
/// (`down -v`) on drop, however the test ends.
struct Project {
    name: String,
    override_file: PathBuf,
    env: Vec<(String, String)>,
}

impl Project {
    /// A project named after this process (`hwtest<pid><hint>`) on the network `network`, the
    /// container's port published on `publish`; nothing runs until [`compose`](Self::compose).
    fn new(hint: &str, network: &TestNetwork, override_file: PathBuf, publish: &str) -> Project {
        crate::support::require_program(COMPOSE, "docker-compose");
        require_local_image();
        let socket_gid = std::fs::metadata("/var/run/docker.sock")
            .expect("the Docker socket")
            .gid();
        Project {
            name: format!("hwtest{}{hint}", std::process::id()),
            override_file,
            env: vec![
                ("DOCKER_GID".into(), socket_gid.to_string()),
                ("HARVEN_STACK_NETWORK".into(), network.name().to_owned()),
                ("HARVEN_WATCHDOG_PUBLISH".into(), publish.to_owned()),
            ],
        }
    }

    /// `docker-compose -p NAME -f deploy/compose.yaml -f OVERRIDE ARGS...`, with the project's
    /// variables (and none of the caller's that would change what runs).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(COMPOSE);
        command
            .arg("--project-name")
            .arg(&self.name)
            .arg("--file")
            .arg(root().join("deploy/compose.yaml"))
            .arg("--file")
            .arg(&self.override_file)
            .args(args)
            .env_remove("HARVEN_WATCHDOG_IMAGE")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().cloned());
        command
    }

    /// Runs [`command`](Self::command) off the async threads.
    async fn compose(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the compose task")
            .unwrap_or_else(|e| panic!("cannot run {COMPOSE} ({e}); scripts/test.sh installs it"))
    }

    /// Like [`compose`](Self::compose), panicking with the tool's output when it fails.
    async fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args).await;
        assert!(
            out.status.success(),
            "{COMPOSE} {args:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The service's logs, for failure messages.
    async fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "80"]).await;
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = self
            .command(&["down", "--volumes", "--timeout", "5"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: {COMPOSE} down for {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run {COMPOSE} down for {}: {e}", self.name),
        }
    }
}

/// A value no other run shares, for the secrets.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

/// A temp dir the image's user (65532) can read: its secrets (mode 0444, as compose.yaml's header
/// asks) and whatever `files` the test mounts.
fn workdir(secrets: &HashMap<&str, String>, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hwtest-deploy-")
        .tempdir()
        .expect("tempdir");
    let readable = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    readable(dir.path(), 0o755);
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    readable(&dir.path().join("secrets"), 0o755);
    for (name, value) in secrets {
        let path = dir.path().join("secrets").join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret");
        readable(&path, 0o444);
    }
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("file");
        readable(&path, 0o444);
    }
    dir
}

/// The override file: the test labels on the container and the volume (so a killed run's leftovers
/// are removed by the next one), the secrets' files (`secrets_dir/<name><suffix>`), and `service`
/// extras (YAML lines indented for the service's mapping).
fn override_yaml(secrets_dir: &Path, suffix: &str, service: &str) -> String {
    let labels = format!(
        "      {TEST_LABEL}: \"1\"\n      {PID_LABEL}: \"{}\"\n",
        std::process::id()
    );
    let mut yaml = format!("services:\n  {SERVICE}:\n    labels:\n{labels}{service}");
    yaml.push_str(&format!(
        "volumes:\n  watchdog-data:\n    labels:\n{labels}secrets:\n"
    ));
    for name in SECRETS {
        let file = secrets_dir.join(format!("{name}{suffix}"));
        yaml.push_str(&format!("  {name}:\n    file: {}\n", file.display()));
    }
    yaml
}

/// The shipped runbook with the unhealthy-backend rule firing after 1 s.
fn quick_unhealthy_rule() -> String {
    let rule = "labels = { role = \"backend\" }, op = \"==\", value = \"unhealthy\" }\nfor = \"";
    let text = harven_watchdog::runbook::DEFAULT_RUNBOOK.replacen(
        &format!("{rule}1m\""),
        &format!("{rule}1s\""),
        1,
    );
    assert_ne!(
        text,
        harven_watchdog::runbook::DEFAULT_RUNBOOK,
        "errors.backend_unhealthy was found"
    );
    text
}

/// deploy/watchdog.toml passes `check-config` inside the image, run through the compose file's own
/// mounts: the configuration at its path and the secrets under /run/secrets (here the example files
/// of config/examples/secrets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_deploy_config_passes_check_config_in_the_image() {
    let network = TestNetwork::create("stack").await;
    let yaml = override_yaml(&root().join("config/examples/secrets"), ".example", "");
    let dir = workdir(&HashMap::new(), &[("override.yaml", &yaml)]);
    // `run` publishes no port (no --service-ports): the value only fills the variable.
    let project = Project::new(
        "checkconfig",
        &network,
        dir.path().join("override.yaml"),
        "127.0.0.1:9464",
    );
    let out = project
        .compose(&[
            "run",
            "--rm",
            "-T",
            "--no-deps",
            SERVICE,
            "--config",
            CONFIG_IN_CONTAINER,
            "check-config",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config refused deploy/watchdog.toml:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("SMTP smtp.example.com:587"), "{stdout}");
    drop(project);
}

/// The whole deployment: compose up beside a healthy busybox backend, then the backend turns
/// unhealthy and the L1 page for the runbook's `errors` section arrives at the SMTP server, sent with
/// the secret password; the API token secret acknowledges it through the published port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_deployment_pages_when_the_backend_turns_unhealthy() {
    crate::support::init();
    let network = TestNetwork::create("stack").await;
    let backend = TestContainer::start(
        ContainerOptions::new()
            .name_hint("backend")
            .network_mode(network.name())
            .health_cmd(&format!("test -f {HEALTH_FILE}")),
    )
    .await;
    backend
        .wait_health(HealthStatusEnum::HEALTHY, Duration::from_secs(60))
        .await;

    let secrets: HashMap<&str, String> = SECRETS.iter().map(|s| (*s, unique(s))).collect();
    let redis = RedisServer::start_on(network.gateway()).await;
    let smtp = SmtpServer::start_opts(SmtpOptions {
        bind: network.gateway(),
        login: Some((SMTP_USER.into(), secrets["smtp_password"].clone())),
        ..SmtpOptions::default()
    })
    .await;

    let port = free_port();
    let gw = network.gateway();
    // Port 1 on the gateway: closed, so Prometheus and the status pages fail at once.
    let layer = format!(
        "[server]\npublic_url = \"http://127.0.0.1:{port}\"\n\
         [runbook]\npath = \"/etc/harven-watchdog/runbook.toml\"\nlocale = \"en\"\n\
         [prometheus]\nurl = \"http://{gw}:1\"\n\
         [status.openai]\nurl = \"http://{gw}:1/api/v2/status.json\"\n\
         [status.supabase]\nurl = \"http://{gw}:1/api/v2/status.json\"\n\
         [supabase]\nurl = \"http://{gw}:1\"\n\
         [redis]\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         [docker]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         [docker.roles.backend]\nnames = [\"{}\"]\ncompose_service = \"\"\n\
         [smtp]\nhost = \"{gw}\"\nport = {}\ntls = \"none\"\n\
         [escalation.l1]\nto = [\"{ONCALL}\"]\n",
        redis.url(),
        backend.name(),
        smtp.port(),
    );
    let runbook = quick_unhealthy_rule();
    let dir = workdir(
        &secrets,
        &[("test.toml", &layer), ("runbook.toml", &runbook)],
    );
    let service = format!(
        "    command: [\"--config\", \"{CONFIG_IN_CONTAINER}\", \"--config\", \"/etc/harven-watchdog/test.toml\", \"run\"]\n\
         \x20   volumes:\n\
         \x20     - {0}/test.toml:/etc/harven-watchdog/test.toml:ro\n\
         \x20     - {0}/runbook.toml:/etc/harven-watchdog/runbook.toml:ro\n\
         \x20   healthcheck:\n      interval: 1s\n      start_period: 0s\n",
        dir.path().display()
    );
    std::fs::write(
        dir.path().join("override.yaml"),
        override_yaml(&dir.path().join("secrets"), "", &service),
    )
    .expect("override");
    let project = Project::new(
        "e2e",
        &network,
        dir.path().join("override.yaml"),
        &format!("127.0.0.1:{port}"),
    );
    project.compose_ok(&["up", "-d", "--no-build"]).await;
    let id = project.compose_ok(&["ps", "-q", SERVICE]).await;
    let id = id.trim();
    assert!(!id.is_empty(), "compose started no {SERVICE} container");

    let docker = crate::support::docker::connect().await;
    let inspect = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .expect("inspect the watchdog container");
    check_container_matches_image(&inspect, &docker, &network).await;

    // Docker's health check: compose.yaml's command, with the mounted configuration. A restart
    // (the daemon exited: compose.yaml restarts it) ends the wait at once.
    let healthy = wait_for_some(DEADLINE, Duration::from_millis(500), || {
        let docker = docker.clone();
        async move {
            let i = docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .ok()?;
            if i.restart_count.unwrap_or(0) > 0 {
                return Some(Err("the daemon exited and was restarted"));
            }
            let health = i.state?.health?.status?;
            (health == HealthStatusEnum::HEALTHY).then_some(Ok(()))
        }
    })
    .await;
    match healthy {
        Ok(Ok(())) => {}
        Ok(Err(why)) => panic!("{why}; logs:\n{}", project.logs().await),
        Err(e) => panic!(
            "the watchdog never turned healthy ({e}); logs:\n{}",
            project.logs().await
        ),
    }
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let healthz = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET /healthz on the published port");
    assert_eq!(healthz.status(), 200);
    // On the stack's network the service name answers, as the Prometheus scrape job
    // (deploy/prometheus/harven-watchdog.yml) expects. busybox `nc` (its `wget` crashes in this
    // image) ends at its stdin's end, so the request is written by `-e`'s program, which then
    // copies the answer to stderr.
    let scrape = backend
        .exec(&[
            "nc",
            SERVICE,
            "9464",
            "-e",
            "/bin/sh",
            "-c",
            "printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n'; cat >&2",
        ])
        .await;
    let head = scrape.output.lines().next().unwrap_or_default();
    assert!(
        head.contains(" 200 ") && scrape.output.ends_with("\r\n\r\nok\n"),
        "{SERVICE}:9464 from the stack's network: {scrape:?}"
    );

    backend.set_healthy(false).await;
    backend
        .wait_health(HealthStatusEnum::UNHEALTHY, Duration::from_secs(60))
        .await;

    let page = wait_for_some(DEADLINE, Duration::from_millis(250), || {
        let found = smtp
            .messages()
            .into_iter()
            .find(|m| m.header("X-Harven-Section") == Some("errors"));
        async move { found }
    })
    .await;
    let page: ReceivedMail = match page {
        Ok(m) => m,
        Err(e) => panic!(
            "no page for the errors section ({e}); mail: {:?}\nSMTP log:\n{}\nwatchdog logs:\n{}",
            smtp.messages()
                .iter()
                .map(|m| m.subject())
                .collect::<Vec<_>>(),
            smtp.log_tail(),
            project.logs().await
        ),
    };
    assert_eq!(page.header("X-Harven-Level"), Some("L1"));
    assert_eq!(page.header("X-Harven-Event"), Some("opened"));
    assert_eq!(page.rcpt_to, vec![ONCALL.to_owned()]);
    let text = page.text().expect("a text part");
    assert!(
        text.contains("A backend container is unhealthy"),
        "the symptom is the unhealthy backend:\n{text}"
    );
    for value in secrets.values() {
        assert!(!page.raw.contains(value.as_str()), "a secret in the email");
    }

    // The API token secret: without it the acknowledgement is refused, with it accepted.
    let incident = page.header("X-Harven-Incident").expect("incident header");
    let ack = format!("{base}/api/incidents/{incident}/ack");
    let refused = client
        .post(&ack)
        .json(&serde_json::json!({"by": "deploy-test"}))
        .send()
        .await
        .expect("POST ack");
    assert_eq!(refused.status(), 401);
    let acked = client
        .post(&ack)
        .bearer_auth(&secrets["watchdog_api_token"])
        .json(&serde_json::json!({"by": "deploy-test"}))
        .send()
        .await
        .expect("POST ack");
    assert_eq!(acked.status(), 200, "{:?}", acked.text().await);

    // The store lives in the compose volume.
    let volume = docker
        .inspect_volume(&format!("{}_watchdog-data", project.name))
        .await
        .expect("the store volume");
    assert!(
        Path::new(&volume.mountpoint).join("watchdog.db").is_file(),
        "no watchdog.db in the volume at {}",
        volume.mountpoint
    );
    drop(project);
    drop(backend);
}

/// What compose.yaml promises, read back from the running container and its image: the socket
/// mounted read-only, the volume on the image's data directory (where its store path points), each
/// secret at /run/secrets, the image's port published, the socket's group added, and the hardening.
async fn check_container_matches_image(
    inspect: &ContainerInspectResponse,
    docker: &bollard::Docker,
    network: &TestNetwork,
) {
    let image = docker
        .inspect_image(LOCAL_IMAGE)
        .await
        .expect("inspect the image");
    let image_config = image.config.expect("image config");
    let data_dir = image_config
        .volumes
        .as_ref()
        .and_then(|v| v.first().cloned())
        .expect("the image declares its data volume");
    let store_path = image_config
        .env
        .unwrap_or_default()
        .into_iter()
        .find_map(|e| {
            e.strip_prefix("HARVEN_WATCHDOG__STORE__PATH=")
                .map(str::to_owned)
        })
        .expect("the image sets the store path");
    assert!(
        store_path.starts_with(&format!("{data_dir}/")),
        "{store_path} in {data_dir}"
    );
    let exposed: Vec<String> = image_config.exposed_ports.unwrap_or_default();
    assert_eq!(exposed, vec!["9464/tcp".to_owned()]);

    let mounts = inspect.mounts.clone().unwrap_or_default();
    let mount = |dest: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(dest))
            .unwrap_or_else(|| panic!("nothing mounted at {dest}: {mounts:?}"))
    };
    let socket = mount("/var/run/docker.sock");
    assert_eq!(socket.rw, Some(false), "the socket is read-only");
    let data = mount(&data_dir);
    assert_eq!(data.typ.as_deref(), Some("volume"), "{data:?}");
    assert!(
        data.name
            .as_deref()
            .is_some_and(|n| n.ends_with("_watchdog-data")),
        "{data:?}"
    );
    for name in SECRETS {
        let secret = mount(&format!("/run/secrets/{name}"));
        assert_eq!(secret.typ.as_deref(), Some("bind"), "{secret:?}");
    }
    let config_mount = mount(CONFIG_IN_CONTAINER);
    assert_eq!(
        config_mount.source.as_deref().map(Path::new),
        Some(root().join("deploy/watchdog.toml").as_path())
    );

    let host = inspect.host_config.clone().expect("host config");
    let gid = std::fs::metadata("/var/run/docker.sock")
        .expect("socket")
        .gid()
        .to_string();
    assert_eq!(host.group_add, Some(vec![gid]));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert!(
        host.port_bindings
            .unwrap_or_default()
            .contains_key("9464/tcp"),
        "the image's port is published"
    );
    let networks = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    assert!(
        networks.contains_key(network.name()),
        "on the stack's network: {:?}",
        networks.keys()
    );
}
