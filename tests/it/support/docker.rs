//! Test containers on the real Docker Engine (`/var/run/docker.sock`, through bollard).
//!
//! No image can be pulled here, so the tests use a local image, [`TEST_IMAGE`], built once per
//! test process from a temporary context: `FROM scratch` plus Debian's static `/bin/busybox`
//! (package `busybox-static`), its applets installed as symlinks in `/bin`, and a `/tmp`
//! (a scratch image has none, and health checks need one for their marker file). The image
//! carries a fingerprint label, so a process that finds it up to date does not rebuild it.
//!
//! Every container is named `hwtest-<pid>-<n>[-hint]`, labelled [`TEST_LABEL`]`=1` and
//! force-removed when its [`TestContainer`] is dropped; a [`TestNetwork`] (a user-defined bridge,
//! for containers that talk to each other and to peers on the host) likewise. Containers,
//! networks and volumes left behind by a test process that died (their [`PID_LABEL`] no longer
//! alive) are removed before the first container or network of a new process starts.
//!
//! An unreachable engine makes the test fail (never skip) with a message that points at
//! `scripts/test.sh`, which installs `docker.io` and starts `dockerd`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

/// The local test image (never pulled; built by [`ensure_test_image`]).
pub const TEST_IMAGE: &str = "harven-watchdog-test/busybox:latest";

/// The project's runnable image, built by `scripts/build-image.sh` (which the test command runs
/// first); never built by the tests.
pub const LOCAL_IMAGE: &str = "harven-watchdog:local";

/// Label set to `1` on every test container (and on the image).
pub const TEST_LABEL: &str = "harven-watchdog-test";

/// Label holding the pid of the test process that created a container.
pub const PID_LABEL: &str = "harven-watchdog-test.pid";

/// Label holding the fingerprint (Dockerfile + busybox binary) of the test image.
const FINGERPRINT_LABEL: &str = "harven-watchdog-test.fingerprint";

/// Where the static busybox comes from (Debian package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// The marker file the default health command tests, created by the default command.
pub const HEALTH_FILE: &str = "/tmp/healthy";

/// The default command: creates [`HEALTH_FILE`] and sleeps, exiting promptly on SIGTERM
/// (a `sh` as PID 1 would otherwise ignore it and `docker stop` would wait its full timeout).
pub const DEFAULT_CMD: [&str; 3] = [
    "/bin/sh",
    "-c",
    "touch /tmp/healthy; trap 'exit 0' TERM INT; while true; do sleep 1; done",
];

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
RUN [\"/bin/mkdir\", \"-p\", \"/tmp\"]\n\
RUN [\"/bin/chmod\", \"1777\", \"/tmp\"]\n\
CMD [\"/bin/sh\"]\n";

/// Connects to the local Docker Engine and checks that it answers; panics with a clear message
/// when it does not (tests must fail, not skip, without an engine).
pub async fn connect() -> Docker {
    let hint = "the Docker Engine is required by these tests: run `bash scripts/test.sh` as root, \
                which installs docker.io and starts dockerd";
    let docker = Docker::connect_with_socket_defaults()
        .unwrap_or_else(|e| panic!("cannot reach /var/run/docker.sock ({e}); {hint}"));
    let docker = docker.negotiate_version().await.unwrap_or_else(|e| {
        panic!("Docker Engine at /var/run/docker.sock not reachable ({e}); {hint}")
    });
    if let Err(e) = docker.ping().await {
        panic!("Docker Engine at /var/run/docker.sock does not answer ping ({e}); {hint}");
    }
    docker
}

/// Runs the `docker` CLI with `args` and returns its output; panics when the CLI is missing.
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the docker CLI ({e}); scripts/test.sh installs docker.io")
        })
}

/// Panics, pointing at `scripts/build-image.sh`, when [`LOCAL_IMAGE`] is not on the Engine.
pub fn require_local_image() {
    let inspect = cli(&["image", "inspect", LOCAL_IMAGE, "--format", "{{.Id}}"]);
    assert!(
        inspect.status.success(),
        "image {LOCAL_IMAGE} is missing: run scripts/build-image.sh (scripts/test.sh does): {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}

static IMAGE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();

/// Builds [`TEST_IMAGE`] if it is missing or outdated (once per test process; concurrent calls
/// wait for the first), and removes containers, networks and volumes left by dead test
/// processes. Panics when the image cannot be built.
pub async fn ensure_test_image() {
    let result = IMAGE
        .get_or_init(|| async {
            let docker = connect().await;
            remove_stale(&docker).await;
            build_image_if_needed(&docker).await
        })
        .await;
    if let Err(e) = result {
        panic!("cannot build the test image {TEST_IMAGE}: {e}");
    }
}

async fn build_image_if_needed(docker: &Docker) -> Result<(), String> {
    super::require_program("docker", "docker.io");
    let busybox = std::fs::read(BUSYBOX).map_err(|e| {
        format!(
            "cannot read {BUSYBOX} ({e}): install Debian's `busybox-static` \
             (`bash scripts/test.sh` does)"
        )
    })?;
    if elf_is_dynamic(&busybox) {
        return Err(format!(
            "{BUSYBOX} is dynamically linked and cannot run in a FROM scratch image: install \
             Debian's `busybox-static` instead of `busybox` (`bash scripts/test.sh` does)"
        ));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    DOCKERFILE.hash(&mut hasher);
    busybox.hash(&mut hasher);
    let fingerprint = format!("{:016x}", hasher.finish());

    if let Ok(image) = docker.inspect_image(TEST_IMAGE).await {
        let current = image
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(FINGERPRINT_LABEL).cloned());
        if current.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
    }

    let context = tempfile::Builder::new()
        .prefix("hwtest-image-")
        .tempdir()
        .map_err(|e| format!("cannot create a build context dir: {e}"))?;
    std::fs::write(context.path().join("Dockerfile"), DOCKERFILE)
        .map_err(|e| format!("cannot write the Dockerfile: {e}"))?;
    std::fs::write(context.path().join("busybox"), &busybox)
        .map_err(|e| format!("cannot copy busybox into the build context: {e}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            context.path().join("busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .map_err(|e| format!("cannot chmod busybox: {e}"))?;
    }
    let context_path = context.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--quiet", "--tag", TEST_IMAGE])
            .arg("--label")
            .arg(format!("{TEST_LABEL}=1"))
            .arg("--label")
            .arg(format!("{FINGERPRINT_LABEL}={fingerprint}"))
            .arg(&context_path)
            .output()
    })
    .await
    .map_err(|e| format!("docker build task failed: {e}"))?
    .map_err(|e| format!("cannot run `docker build`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`docker build` failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// True when an ELF file has a PT_INTERP program header (i.e. needs a dynamic loader).
fn elf_is_dynamic(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read_u16 = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let read_u32 = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let read_u64 = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // Only 64-bit little-endian ELF is expected here (amd64/arm64); anything else: assume static.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (read_u64(0x20), read_u16(0x36), read_u16(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        read_u32(at) == Some(PT_INTERP)
    })
}

/// True when `labels` carry the [`PID_LABEL`] of a test process that is gone (not this one).
fn left_by_dead_process(labels: Option<&HashMap<String, String>>) -> bool {
    let Some(pid) = labels.and_then(|l| l.get(PID_LABEL)) else {
        return false;
    };
    *pid != std::process::id().to_string()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes test containers, then the networks and volumes they used, whose creating process is
/// gone (a test run that was killed).
async fn remove_stale(docker: &Docker) {
    remove_stale_containers(docker).await;
    let filters = HashMap::from([("label", vec![TEST_LABEL.to_owned()])]);
    if let Ok(networks) = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
    {
        for n in networks {
            if left_by_dead_process(n.labels.as_ref())
                && let Some(id) = n.id
            {
                let _ = docker.remove_network(&id).await;
            }
        }
    }
    if let Ok(volumes) = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
    {
        for v in volumes.volumes.unwrap_or_default() {
            if left_by_dead_process(Some(&v.labels)) {
                let _ = docker
                    .remove_volume(
                        &v.name,
                        Some(RemoveVolumeOptionsBuilder::new().force(true).build()),
                    )
                    .await;
            }
        }
    }
}

/// Removes test containers whose creating process is gone (a test run that was killed).
async fn remove_stale_containers(docker: &Docker) {
    let filters = HashMap::from([("label", vec![TEST_LABEL.to_owned()])]);
    let Ok(containers) = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    else {
        return;
    };
    for c in containers {
        if !left_by_dead_process(c.labels.as_ref()) {
            continue;
        }
        if let Some(id) = c.id {
            let _ = force_remove(docker, &id).await;
        }
    }
}

/// The labels Docker Compose (v1 and v2) puts on a service's containers.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";

/// What a [`TestContainer`] runs with. Build it with the chained setters:
///
/// ```ignore
/// ContainerOptions::new()
///     .health_cmd("test -f /tmp/healthy")
///     .env("JWT_SECRET", "x")
///     .memory(64 << 20)
/// ```
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// A short word added to the generated name (`hwtest-<pid>-<n>-<hint>`).
    pub name_hint: Option<String>,
    /// The container's exact name instead of a generated one (a Compose-style name); the caller
    /// makes it unique.
    pub exact_name: Option<String>,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    /// The command; [`DEFAULT_CMD`] when `None`.
    pub cmd: Option<Vec<String>>,
    /// The image; [`TEST_IMAGE`] when `None` (another one: a [`TestImage`], a redeploy).
    pub image: Option<String>,
    /// A shell health command (`CMD-SHELL`), checked every second, 2 retries, 10 s timeout.
    pub health_cmd: Option<String>,
    /// Memory limit in bytes (swap is limited to the same amount, so exceeding it OOM-kills).
    pub memory_bytes: Option<i64>,
    /// Restart policy and its maximum retry count (for `on-failure`).
    pub restart_policy: Option<(RestartPolicyNameEnum, i64)>,
    /// Extra labels (the test labels are always added).
    pub labels: HashMap<String, String>,
    /// Docker network mode; `none` when `None` (test containers need no network, and this
    /// keeps them independent of the bridge/iptables set-up). Use `host`, `bridge` or a
    /// [`TestNetwork`]'s name if needed.
    pub network_mode: Option<String>,
}

impl ContainerOptions {
    /// Default options: [`DEFAULT_CMD`], no health check, no limits, network `none`.
    pub fn new() -> ContainerOptions {
        ContainerOptions::default()
    }

    /// Adds a word to the container name, to recognise it in `docker ps`.
    pub fn name_hint(mut self, hint: &str) -> Self {
        self.name_hint = Some(hint.to_owned());
        self
    }

    /// Names the container exactly `name` (e.g. `proj-backend-1`) instead of `hwtest-<pid>-<n>`.
    pub fn exact_name(mut self, name: &str) -> Self {
        self.exact_name = Some(name.to_owned());
        self
    }

    /// Labels the container as Compose does replica `number` of `service` in `project`.
    pub fn compose(self, project: &str, service: &str, number: u32) -> Self {
        self.label(COMPOSE_PROJECT, project)
            .label(COMPOSE_SERVICE, service)
            .label(COMPOSE_NUMBER, &number.to_string())
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the command (replacing [`DEFAULT_CMD`]).
    pub fn cmd<S: AsRef<str>>(mut self, cmd: &[S]) -> Self {
        self.cmd = Some(cmd.iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// Runs `image` (a [`TestImage`]'s tag) instead of [`TEST_IMAGE`].
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }

    /// Sets a health check run by `/bin/sh -c` in the container (e.g.
    /// `test -f /tmp/healthy`), every second with 2 retries.
    pub fn health_cmd(mut self, cmd: &str) -> Self {
        self.health_cmd = Some(cmd.to_owned());
        self
    }

    /// Sets a memory limit in bytes (memory + swap = the same limit).
    pub fn memory(mut self, bytes: i64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    /// Sets the restart policy (`max_retries` matters for `ON_FAILURE` only).
    pub fn restart_policy(mut self, policy: RestartPolicyNameEnum, max_retries: i64) -> Self {
        self.restart_policy = Some((policy, max_retries));
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the network mode (`none` by default), or the name of a network to join.
    pub fn network_mode(mut self, mode: &str) -> Self {
        self.network_mode = Some(mode.to_owned());
        self
    }
}

/// An image of its own (another image ID than [`TEST_IMAGE`]'s): a container's file system
/// committed under `harven-watchdog-test/busybox:<hint>-<pid>-<n>`, as a new release is. Removed
/// when dropped.
pub struct TestImage {
    tag: String,
}

impl TestImage {
    /// Commits `container` as a new image (`docker commit`, which pauses it for a moment).
    pub fn commit(container: &TestContainer, hint: &str) -> TestImage {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!(
            "harven-watchdog-test/busybox:{hint}-{}-{n}",
            std::process::id()
        );
        let out = cli(&["commit", container.id(), &tag]);
        assert!(
            out.status.success(),
            "docker commit {}: {}",
            container.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        TestImage { tag }
    }

    /// The image's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = cli(&["rmi", "-f", &self.tag]);
    }
}

/// A Compose project name no other test uses: `hwtest<pid>p<n>` (lowercase letters and digits, as
/// both Compose v1 and v2 accept).
pub fn compose_project() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("hwtest{}p{n}", std::process::id())
}

/// The result of [`TestContainer::exec`].
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// The exit code (`None` if the engine did not report one).
    pub exit_code: Option<i64>,
    /// stdout and stderr, interleaved as received.
    pub output: String,
}

/// A running test container; force-removed (with its volumes) on drop.
pub struct TestContainer {
    docker: Docker,
    name: String,
    id: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestContainer {
    /// Creates and starts a container from [`TEST_IMAGE`] (building the image first if
    /// needed). Panics with the engine's message when it cannot.
    pub async fn start(opts: ContainerOptions) -> TestContainer {
        ensure_test_image().await;
        let docker = connect().await;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut name = format!("hwtest-{}-{n}", std::process::id());
        if let Some(hint) = &opts.name_hint {
            name.push('-');
            name.push_str(hint);
        }
        if let Some(exact) = &opts.exact_name {
            name.clone_from(exact);
        }
        let mut labels = opts.labels.clone();
        labels.insert(TEST_LABEL.to_owned(), "1".to_owned());
        labels.insert(PID_LABEL.to_owned(), std::process::id().to_string());
        let healthcheck = opts.health_cmd.as_ref().map(|cmd| HealthConfig {
            test: Some(vec!["CMD-SHELL".to_owned(), cmd.clone()]),
            interval: Some(1_000_000_000),
            timeout: Some(10_000_000_000),
            retries: Some(2),
            start_period: Some(0),
            start_interval: None,
        });
        let host_config = HostConfig {
            memory: opts.memory_bytes,
            memory_swap: opts.memory_bytes,
            restart_policy: opts.restart_policy.map(|(name, max)| RestartPolicy {
                name: Some(name),
                maximum_retry_count: Some(max),
            }),
            network_mode: Some(
                opts.network_mode
                    .clone()
                    .unwrap_or_else(|| "none".to_owned()),
            ),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(opts.image.clone().unwrap_or_else(|| TEST_IMAGE.to_owned())),
            cmd: Some(
                opts.cmd
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CMD.iter().map(|s| (*s).to_owned()).collect()),
            ),
            env: Some(opts.env.clone()),
            labels: Some(labels),
            healthcheck,
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create test container {name}: {e}"));
        // From here on, Drop removes the container even if starting it fails.
        let container = TestContainer {
            docker,
            name,
            id: created.id,
        };
        if let Err(e) = container.docker.start_container(&container.id, None).await {
            panic!("cannot start test container {}: {e}", container.name);
        }
        container
    }

    /// The container's name (`hwtest-<pid>-<n>[-hint]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's full ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A Docker client connected in the current test's runtime.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Inspects the container (state, health, restart count, config…). Panics on error.
    pub async fn inspect(&self) -> ContainerInspectResponse {
        self.docker
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("cannot inspect test container {}: {e}", self.name))
    }

    /// The current health status (`None` without a health check).
    pub async fn health(&self) -> Option<HealthStatusEnum> {
        self.inspect()
            .await
            .state
            .and_then(|s| s.health)
            .and_then(|h| h.status)
    }

    /// Waits until the health status is `status` and returns the inspect data of that moment;
    /// panics (with the last state and health log) when `timeout` passes first.
    pub async fn wait_health(
        &self,
        status: HealthStatusEnum,
        timeout: Duration,
    ) -> ContainerInspectResponse {
        self.wait_inspect(
            &format!("health {status}"),
            |i| {
                i.state
                    .as_ref()
                    .and_then(|s| s.health.as_ref())
                    .and_then(|h| h.status)
                    == Some(status)
            },
            timeout,
        )
        .await
    }

    /// Waits until `predicate` holds for the inspect data (e.g. a restart count, OOMKilled)
    /// and returns that data; panics with `what` and the last state when `timeout` passes.
    pub async fn wait_inspect<P>(
        &self,
        what: &str,
        predicate: P,
        timeout: Duration,
    ) -> ContainerInspectResponse
    where
        P: Fn(&ContainerInspectResponse) -> bool,
    {
        // A Mutex (not a RefCell) keeps the future Send, so callers may spawn it.
        let last = std::sync::Mutex::new(String::new());
        let found = super::wait_for_some(timeout, Duration::from_millis(200), || {
            let fut = self
                .docker
                .inspect_container(&self.id, None::<InspectContainerOptions>);
            let predicate = &predicate;
            let last = &last;
            async move {
                match fut.await {
                    Ok(i) if predicate(&i) => Some(i),
                    Ok(i) => {
                        *last.lock().unwrap() = format!("{:?}", i.state);
                        None
                    }
                    Err(e) => {
                        *last.lock().unwrap() = format!("inspect error: {e}");
                        None
                    }
                }
            }
        })
        .await;
        match found {
            Ok(i) => i,
            Err(e) => panic!(
                "test container {}: {what} not reached ({e}); last state: {}",
                self.name,
                last.lock().unwrap()
            ),
        }
    }

    /// Runs `cmd` in the container (no shell unless you call `/bin/sh -c`) and returns its exit
    /// code and output. Panics when the engine refuses the exec.
    pub async fn exec<S: AsRef<str>>(&self, cmd: &[S]) -> ExecOutput {
        let cmd: Vec<String> = cmd.iter().map(|s| s.as_ref().to_owned()).collect();
        let exec = self
            .docker
            .create_exec(
                &self.id,
                CreateExecOptions {
                    cmd: Some(cmd.clone()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("cannot exec {cmd:?} in {}: {e}", self.name));
        let mut output = String::new();
        match self.docker.start_exec(&exec.id, None).await {
            Ok(StartExecResults::Attached {
                output: mut stream, ..
            }) => {
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(LogOutput::StdOut { message })
                        | Ok(LogOutput::StdErr { message })
                        | Ok(LogOutput::Console { message }) => {
                            output.push_str(&String::from_utf8_lossy(&message));
                        }
                        Ok(LogOutput::StdIn { .. }) => {}
                        Err(e) => panic!("exec {cmd:?} in {}: output error: {e}", self.name),
                    }
                }
            }
            Ok(StartExecResults::Detached) => {}
            Err(e) => panic!("cannot start exec {cmd:?} in {}: {e}", self.name),
        }
        // The output stream ends when the process exits; the exit code can lag a moment.
        let docker = &self.docker;
        let exec_id = exec.id.clone();
        let exit_code =
            super::wait_for_some(Duration::from_secs(30), Duration::from_millis(50), || {
                let fut = docker.inspect_exec(&exec_id);
                async move {
                    match fut.await {
                        Ok(info) if info.running == Some(false) => Some(info.exit_code),
                        Ok(_) => None,
                        Err(_) => Some(None),
                    }
                }
            })
            .await
            .unwrap_or(None);
        ExecOutput { exit_code, output }
    }

    /// Makes the default health check (`test -f /tmp/healthy`) pass or fail from its next run,
    /// by creating or removing [`HEALTH_FILE`].
    pub async fn set_healthy(&self, healthy: bool) {
        let out = if healthy {
            self.exec(&["touch", HEALTH_FILE]).await
        } else {
            self.exec(&["rm", "-f", HEALTH_FILE]).await
        };
        assert_eq!(
            out.exit_code,
            Some(0),
            "flipping the health file in {} failed: {}",
            self.name,
            out.output
        );
    }

    /// Writes `line` to the container's stdout (PID 1's fd 1), so it shows up in
    /// `docker logs` as if the application had logged it.
    pub async fn emit_log(&self, line: &str) {
        let out = self
            .exec(&[
                "/bin/sh",
                "-c",
                "printf '%s\\n' \"$1\" > /proc/1/fd/1",
                "sh",
                line,
            ])
            .await;
        assert_eq!(
            out.exit_code,
            Some(0),
            "writing a log line in {} failed: {}",
            self.name,
            out.output
        );
    }

    /// Stops the container (SIGTERM, SIGKILL after `grace`).
    pub async fn stop(&self, grace: Duration) {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        self.docker
            .stop_container(
                &self.id,
                Some(StopContainerOptionsBuilder::new().t(t).build()),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot stop test container {}: {e}", self.name));
    }

    /// Kills the container's process with `signal` (e.g. `SIGKILL`).
    pub async fn kill(&self, signal: &str) {
        self.docker
            .kill_container(
                &self.id,
                Some(KillContainerOptionsBuilder::new().signal(signal).build()),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot kill test container {}: {e}", self.name));
    }

    /// Restarts the container (also starts a stopped one); SIGKILL after `grace`.
    pub async fn restart(&self, grace: Duration) {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        self.docker
            .restart_container(
                &self.id,
                Some(RestartContainerOptionsBuilder::new().t(t).build()),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot restart test container {}: {e}", self.name));
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let id = self.id.clone();
        remove_on_drop(
            &format!("test container {}", self.name),
            move |docker| async move { force_remove(&docker, &id).await },
        );
    }
}

/// Removes a container, running or not, with its anonymous volumes.
async fn force_remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    docker
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
}

/// Runs `remove` with a fresh client on a helper thread with its own runtime, and waits for it
/// (at most 60 s): `Drop` cannot await, and the test's runtime may be single-threaded or shutting
/// down. A thing already gone (404) is fine; any other failure is a warning on stderr.
fn remove_on_drop<F, Fut>(what: &str, remove: F)
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), bollard::errors::Error>>,
{
    let handle = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return Err(format!("cannot build a runtime: {e}")),
        };
        runtime.block_on(async move {
            let docker = Docker::connect_with_socket_defaults().map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_secs(60), remove(docker)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    });
    match handle.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not remove {what}: {e}"),
        Err(_) => eprintln!("warning: removing {what} panicked"),
    }
}

/// A user-defined bridge network on the real Engine, labelled like the test containers and
/// removed on drop (drop its containers first: the Engine refuses to remove a network in use).
/// Containers on it resolve each other by name and reach the host at [`gateway`](Self::gateway),
/// where a test binds its host-side peers.
pub struct TestNetwork {
    name: String,
    gateway: IpAddr,
}

impl TestNetwork {
    /// Creates the network `hwtest-<pid>-<n>-<hint>`. Panics with the engine's message when it
    /// cannot, or when the network has no IPv4 gateway.
    pub async fn create(hint: &str) -> TestNetwork {
        ensure_test_image().await;
        let docker = connect().await;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("hwtest-{}-{n}-{hint}", std::process::id());
        let labels = HashMap::from([
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (PID_LABEL.to_owned(), std::process::id().to_string()),
        ]);
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("cannot create test network {name}: {e}"));
        // From here on, Drop removes the network even if inspecting it fails.
        let mut network = TestNetwork {
            name,
            gateway: std::net::Ipv4Addr::UNSPECIFIED.into(),
        };
        let inspect = docker
            .inspect_network(&network.name, None::<InspectNetworkOptions>)
            .await
            .unwrap_or_else(|e| panic!("cannot inspect test network {}: {e}", network.name));
        network.gateway = inspect
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
            .find(IpAddr::is_ipv4)
            .unwrap_or_else(|| panic!("test network {} has no IPv4 gateway", network.name));
        network
    }

    /// The network's name (also what [`ContainerOptions::network_mode`] takes to join it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on this network: containers on it reach host peers bound here.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let name = self.name.clone();
        remove_on_drop(
            &format!("test network {}", self.name),
            move |docker| async move { docker.remove_network(&name).await },
        );
    }
}
