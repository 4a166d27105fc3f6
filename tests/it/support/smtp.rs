//! A real SMTP server for tests: Debian's `python3-aiosmtpd`, run as
//! `/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`.
//!
//! The `Mailbox` handler stores every message in a Maildir (`DIR/new/<unique>`), adding the
//! `X-Peer`, `X-MailFrom` and `X-RcptTo` headers; [`SmtpServer::messages`] reads them back.
//! Two traps, both handled here: the module exists only for Debian's own interpreter
//! (`/usr/bin/python3`, not a pyenv `python3` on PATH), and `DIR` must not exist beforehand
//! (Maildir only creates `cur/new/tmp` when it creates `DIR` itself).
//!
//! The server speaks plaintext SMTP without authentication on 127.0.0.1 by default;
//! [`SmtpServer::start_with`] adds STARTTLS (`--tlscert/--tlskey`) or implicit TLS
//! (`--smtpscert/--smtpskey`) with a certificate from [`TestCa`], a CA and a leaf certificate
//! for `localhost`/`127.0.0.1` made with the `openssl` command. [`SmtpServer::start_opts`] also
//! binds another address (a Docker network's gateway, for containers) and can require a login
//! (`AUTH PLAIN`/`LOGIN`; [`SmtpServer::start_with_login`] over TLS): the aiosmtpd command line
//! has no authenticator, so that mode starts it through [`LOGIN_LAUNCHER`], a few lines of Python
//! that give aiosmtpd's `SMTP` class one, logging every attempt (mechanism and result, never the
//! credentials) to the server's log, read back with [`SmtpServer::logins`].
//!
//! [`ScriptedSmtp`] is a tiny in-process SMTP responder for what aiosmtpd will not do on
//! request: refuse a recipient with a 5xx, or refuse a login (echoing the credentials back, as
//! a careless server might).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harven_watchdog::clock::ManualClock;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::process::{PeerProcess, start_on_free_port};

/// The interpreter that has Debian's aiosmtpd module.
pub const PYTHON: &str = "/usr/bin/python3";

/// How the test SMTP server protects connections.
#[derive(Debug, Clone, Default)]
pub enum SmtpTls {
    /// Plaintext only (STARTTLS is not offered).
    #[default]
    None,
    /// STARTTLS offered (and required before mail) with this certificate chain and key.
    Starttls { cert: PathBuf, key: PathBuf },
    /// Implicit TLS (SMTPS) from the first byte.
    Implicit { cert: PathBuf, key: PathBuf },
}

/// aiosmtpd's own command line with an authenticator that accepts one username and password (read
/// from the environment, so they are not on the command line) and `auth_required`: mail without a
/// login is refused (`530`), so a message in the Maildir proves the client sent that password.
/// Every attempt is printed as `AUTH <mechanism> accepted|refused` (never the credentials), read
/// back by [`SmtpServer::logins`]. `HWTEST_SMTP_REQUIRE_TLS=0` also offers `AUTH` before TLS (for a
/// server without TLS); otherwise it is offered only after STARTTLS, as aiosmtpd does.
const LOGIN_LAUNCHER: &str = r#"
import functools, os, sys
import aiosmtpd.main
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
user = os.environb[b"HWTEST_SMTP_USER"]
password = os.environb[b"HWTEST_SMTP_PASSWORD"]
require_tls = os.environ.get("HWTEST_SMTP_REQUIRE_TLS") != "0"
def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
    print("AUTH", mechanism, "accepted" if ok else "refused", flush=True)
    return AuthResult(success=ok, handled=False)
aiosmtpd.main.SMTP = functools.partial(SMTP, authenticator=authenticate, auth_required=True,
                                       auth_require_tls=require_tls)
sys.argv[0] = "aiosmtpd"
aiosmtpd.main.main(sys.argv[1:])
"#;

/// How a test SMTP server listens and whom it accepts.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// TLS (none by default).
    pub tls: SmtpTls,
    /// The address to listen on: 127.0.0.1 by default; a Docker network's gateway to be
    /// reachable from that network's containers.
    pub bind: IpAddr,
    /// `(user, password)`: require this login before accepting mail ([`LOGIN_LAUNCHER`]); over
    /// TLS when `tls` has some, else over plaintext.
    pub login: Option<(String, String)>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            tls: SmtpTls::None,
            bind: Ipv4Addr::LOCALHOST.into(),
            login: None,
        }
    }
}

/// A running aiosmtpd server; killed (and its temp dir with the mail removed) on drop.
pub struct SmtpServer {
    /// Declared before `dir`, so the process is killed before its directory goes.
    process: PeerProcess,
    port: u16,
    dir: tempfile::TempDir,
    opts: SmtpOptions,
    /// `opts.bind` as text, for [`host`](Self::host).
    host: String,
}

impl SmtpServer {
    /// Starts the SMTP server on an ephemeral port of 127.0.0.1 and waits for its `220`
    /// banner. Panics with a clear message when `/usr/bin/python3` or its aiosmtpd module is
    /// missing, or when the server does not start.
    pub async fn start() -> SmtpServer {
        Self::start_with(SmtpTls::None).await
    }

    /// Like [`start`](Self::start), with STARTTLS or implicit TLS. For implicit TLS, readiness
    /// is the port accepting connections (the banner comes only after a TLS handshake).
    pub async fn start_with(tls: SmtpTls) -> SmtpServer {
        Self::start_opts(SmtpOptions {
            tls,
            ..SmtpOptions::default()
        })
        .await
    }

    /// Like [`start_with`](Self::start_with), and every message needs a login as `user` with
    /// `password` first. aiosmtpd offers `AUTH` only over TLS, so `tls` should not be `None`.
    pub async fn start_with_login(tls: SmtpTls, user: &str, password: &str) -> SmtpServer {
        Self::start_opts(SmtpOptions {
            tls,
            login: Some((user.to_owned(), password.to_owned())),
            ..SmtpOptions::default()
        })
        .await
    }

    /// Like [`start`](Self::start), on `opts.bind`, with `opts.tls`, requiring `opts.login` when
    /// set.
    pub async fn start_opts(opts: SmtpOptions) -> SmtpServer {
        super::require_program(PYTHON, "python3-aiosmtpd");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-smtp-")
            .tempdir()
            .expect("create a temp dir for the SMTP server");
        let mut server = SmtpServer {
            process: PeerProcess::new("aiosmtpd", dir.path().join("smtp.log")),
            port: 0,
            dir,
            host: opts.bind.to_string(),
            opts,
        };
        start_on_free_port("the SMTP server", server.opts.bind, async |port| {
            server.port = port;
            server.spawn_and_wait().await
        })
        .await;
        server
    }

    /// The host to connect to: the address it listens on (`127.0.0.1` unless
    /// [`SmtpOptions::bind`] said otherwise).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `smtp://HOST:PORT` URL (plaintext, as lettre's `from_url` understands it).
    pub fn url(&self) -> String {
        format!("smtp://{}:{}", self.host, self.port)
    }

    /// The Maildir the server writes into (it exists once the server has started).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Stops the server (SIGTERM, SIGKILL after 5 s): connections are then refused. Mail
    /// received so far stays readable.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }

    /// Starts the server again on the same port, with the same Maildir (stopping it first if
    /// it runs), and waits for its banner. Panics if it cannot (e.g. the port was taken).
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait().await {
            panic!("the SMTP server did not restart on port {}: {e}", self.port);
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let new_dir = self.maildir().join("new");
        let entries = match std::fs::read_dir(&new_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", new_dir.display()),
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| {
                let modified = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, p)
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| {
                // A file can vanish if a test removes mail concurrently; skip it.
                let bytes = std::fs::read(&path).ok()?;
                Some(ReceivedMail::parse(path, &bytes))
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived and returns all of them; panics (saying
    /// how many arrived) when `timeout` passes first.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let found = super::wait_for_some(timeout, Duration::from_millis(50), || {
            let messages = self.messages();
            async move { (messages.len() >= n).then_some(messages) }
        })
        .await;
        match found {
            Ok(messages) => messages,
            Err(e) => panic!(
                "expected at least {n} message(s) on the SMTP server, got {} ({e}); log tail:\n{}",
                self.messages().len(),
                self.log_tail()
            ),
        }
    }

    /// Removes every received message (e.g. between phases of a test).
    pub fn clear(&self) {
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir().join(sub)) {
                for entry in entries.filter_map(Result::ok) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// The login attempts of a server started with [`start_with_login`](Self::start_with_login),
    /// oldest first, as `"<MECHANISM> accepted"` or `"<MECHANISM> refused"`.
    pub fn logins(&self) -> Vec<String> {
        std::fs::read_to_string(self.process.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("AUTH "))
            .map(str::to_owned)
            .collect()
    }

    /// The last 4 KiB of the server's output, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Spawns aiosmtpd on `self.host:self.port` and waits for its banner (for implicit TLS, for
    /// the port to accept); on failure the process is reaped and the error says why (with the log
    /// tail, and a hint when Debian's module is missing).
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut command = Command::new(PYTHON);
        match &self.opts.login {
            None => command.args(["-m", "aiosmtpd"]),
            Some((user, password)) => command
                .args(["-c", LOGIN_LAUNCHER])
                .env("HWTEST_SMTP_USER", user)
                .env("HWTEST_SMTP_PASSWORD", password)
                .env(
                    "HWTEST_SMTP_REQUIRE_TLS",
                    if matches!(self.opts.tls, SmtpTls::None) {
                        "0"
                    } else {
                        "1"
                    },
                ),
        };
        command
            .args(["-n", "-l"])
            .arg(format!("{}:{}", self.host, self.port));
        match &self.opts.tls {
            SmtpTls::None => {}
            SmtpTls::Starttls { cert, key } => {
                command.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
            }
            SmtpTls::Implicit { cert, key } => {
                command
                    .arg("--smtpscert")
                    .arg(cert)
                    .arg("--smtpskey")
                    .arg(key);
            }
        }
        command
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir())
            .env("PYTHONUNBUFFERED", "1");
        let addr = (self.opts.bind, self.port);
        let implicit = matches!(self.opts.tls, SmtpTls::Implicit { .. });
        let what = if implicit {
            format!("a connection on {}:{}", self.host, self.port)
        } else {
            format!("a 220 banner on {}:{}", self.host, self.port)
        };
        let ready = || async move {
            if implicit {
                accepts(addr).await
            } else {
                banner(addr).await
            }
        };
        self.process
            .spawn_and_wait(
                &mut command,
                "python3-aiosmtpd",
                &what,
                Duration::from_millis(25),
                ready,
            )
            .await
            .map_err(|e| {
                if e.contains("No module named aiosmtpd") {
                    format!(
                        "{e}\nDebian's `python3-aiosmtpd` is not installed: run \
                         `bash scripts/test.sh` as root, which installs it"
                    )
                } else {
                    e
                }
            })
    }
}

/// True when the port accepts a TCP connection (for an implicit-TLS server, whose greeting
/// only comes after a handshake).
async fn accepts(addr: (IpAddr, u16)) -> bool {
    tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Connects, reads the greeting and says QUIT; true when the greeting starts with `220`.
async fn banner(addr: (IpAddr, u16)) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        Some(line.starts_with("220"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A test certificate authority and a leaf certificate it signed for `localhost` and
/// `127.0.0.1`, made with the `openssl` command in a temp dir (removed on drop). A single
/// self-signed certificate would not do: rustls refuses a CA certificate used as the server's
/// own (`CaUsedAsEndEntity`).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Generates the CA and the leaf (P-256 keys, valid for two days).
    pub fn generate() -> TestCa {
        super::require_program("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-ca-")
            .tempdir()
            .expect("create a temp dir for the test CA");
        let ca = TestCa { dir };
        std::fs::write(
            ca.path("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write the leaf extensions");
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=harven test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        ca.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ]);
        ca.openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
        ca
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's certificate (PEM), signed by the CA.
    pub fn leaf_pem(&self) -> PathBuf {
        self.path("leaf.pem")
    }

    /// The server's private key (PEM).
    pub fn leaf_key(&self) -> PathBuf {
        self.path("leaf.key")
    }

    /// STARTTLS with the leaf certificate, for [`SmtpServer::start_with`].
    pub fn starttls(&self) -> SmtpTls {
        SmtpTls::Starttls {
            cert: self.leaf_pem(),
            key: self.leaf_key(),
        }
    }

    /// Implicit TLS with the leaf certificate, for [`SmtpServer::start_with`].
    pub fn implicit(&self) -> SmtpTls {
        SmtpTls::Implicit {
            cert: self.leaf_pem(),
            key: self.leaf_key(),
        }
    }
}

/// What a [`ScriptedSmtp`] answers where it does not simply say `250`.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The reply to every `RCPT TO` (e.g. `550 5.1.1 no such user`); `None`: `250`.
    pub rcpt_reply: Option<String>,
    /// Advertise `AUTH PLAIN LOGIN` and answer every `AUTH` with this reply, followed by the
    /// command line it got and its base64 argument decoded — a careless server echoing the
    /// credentials, so tests can prove the client never repeats them.
    pub auth_reply: Option<String>,
}

/// A tiny SMTP responder on 127.0.0.1 (in-process, plaintext) that follows a [`Script`] and
/// records every command line it receives. Stops on drop.
pub struct ScriptedSmtp {
    port: u16,
    commands: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedSmtp {
    pub async fn start(script: Script) -> ScriptedSmtp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the scripted SMTP responder");
        let port = listener.local_addr().expect("local addr").port();
        let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = commands.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(scripted_session(stream, script.clone(), log.clone()));
            }
        });
        ScriptedSmtp {
            port,
            commands,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every command line received so far (DATA contents excluded).
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().expect("commands lock").clone()
    }

    /// How many received command lines start with `verb` (case-insensitive), e.g. `RCPT`.
    pub fn count(&self, verb: &str) -> usize {
        self.commands()
            .iter()
            .filter(|c| {
                c.get(..verb.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(verb))
            })
            .count()
    }
}

impl Drop for ScriptedSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted_session(
    stream: tokio::net::TcpStream,
    script: Script,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if write.write_all(b"220 scripted ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        log.lock().expect("commands lock").push(command.clone());
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                if script.auth_reply.is_some() {
                    "250-scripted\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME".to_owned()
                } else {
                    "250-scripted\r\n250 8BITMIME".to_owned()
                }
            }
            "AUTH" => {
                use base64::Engine as _;
                let arg = command.split_whitespace().nth(2).unwrap_or("");
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(arg)
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                let base = script
                    .auth_reply
                    .clone()
                    .unwrap_or_else(|| "502 5.5.1 no AUTH here".to_owned());
                format!("{base} (you sent {command} = {decoded})")
            }
            "RCPT" => script
                .rcpt_reply
                .clone()
                .unwrap_or_else(|| "250 2.1.5 ok".to_owned()),
            "DATA" => {
                if write.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line.trim_end() == "." => break,
                        Ok(_) => {}
                    }
                }
                "250 2.0.0 queued".to_owned()
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "250 ok".to_owned(),
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Moves the clock `step` at a time (a real pause between steps lets probes report) until `done`
/// holds for the received mail; panics after 120 s of real time.
pub async fn advance_until(
    hand: &ManualClock,
    step: Duration,
    smtp: &SmtpServer,
    what: &str,
    done: impl Fn(&[ReceivedMail]) -> bool,
) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mail = smtp.messages();
        if done(&mail) {
            return mail;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; mail so far: {:#?}",
            summary(&mail)
        );
        hand.advance(step);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The subjects of `mail`, for failure messages.
pub fn summary(mail: &[ReceivedMail]) -> Vec<String> {
    mail.iter()
        .map(|m| m.subject().unwrap_or_default())
        .collect()
}

/// One message as the SMTP server stored it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The Maildir file it was read from.
    pub path: PathBuf,
    /// The whole message as stored (headers added by the server included), lossy UTF-8.
    pub raw: String,
    /// The top-level headers in order, continuation lines unfolded, values trimmed and not
    /// decoded (see [`decoded_header`](Self::decoded_header)).
    pub headers: Vec<(String, String)>,
    /// The top-level body as sent (not transfer-decoded; see [`text`](Self::text)).
    pub body: String,
    /// The envelope recipients (`RCPT TO`), from the server's `X-RcptTo` header.
    pub rcpt_to: Vec<String>,
    /// The envelope sender (`MAIL FROM`), from the server's `X-MailFrom` header.
    pub mail_from: Option<String>,
}

impl ReceivedMail {
    /// Parses a stored message.
    pub fn parse(path: PathBuf, bytes: &[u8]) -> ReceivedMail {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let (headers, body) = split_entity(&raw);
        let list = |name: &str| -> Vec<String> {
            find_header(&headers, name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let rcpt_to = list("X-RcptTo");
        let mail_from = find_header(&headers, "X-MailFrom").map(str::to_owned);
        ReceivedMail {
            path,
            headers,
            body: body.to_owned(),
            raw,
            rcpt_to,
            mail_from,
        }
    }

    /// The first header named `name` (case-insensitive), raw (RFC 2047 words not decoded).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every header named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first header named `name`, with RFC 2047 encoded words (`=?utf-8?b?...?=`, which
    /// lettre uses for non-ASCII text such as "provável") decoded.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        self.header(name).map(decode_rfc2047)
    }

    /// The decoded `Subject`.
    pub fn subject(&self) -> Option<String> {
        self.decoded_header("Subject")
    }

    /// The leaf parts of the message (the message itself when it is not multipart), with
    /// their bodies transfer-decoded (base64 / quoted-printable).
    pub fn parts(&self) -> Vec<MailPart> {
        let mut out = Vec::new();
        collect_parts(&self.headers, &self.body, &mut out, 0);
        out
    }

    /// The decoded text of the first `text/plain` part (or of a non-multipart message
    /// without a content type).
    pub fn text(&self) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type.starts_with("text/plain"))
            .map(|p| p.body)
    }

    /// The decoded text of the first `text/html` part.
    pub fn html(&self) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type.starts_with("text/html"))
            .map(|p| p.body)
    }
}

/// A leaf MIME part of a [`ReceivedMail`].
#[derive(Debug, Clone)]
pub struct MailPart {
    /// The media type, lowercased, without parameters (`text/plain` when absent).
    pub content_type: String,
    /// The part's headers, unfolded.
    pub headers: Vec<(String, String)>,
    /// The body, transfer-decoded and read as UTF-8 (lossy).
    pub body: String,
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Splits an entity into unfolded headers and the body.
fn split_entity(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

/// The value of parameter `name` in a header such as `multipart/alternative; boundary="x"`.
fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn collect_parts(headers: &[(String, String)], body: &str, out: &mut Vec<MailPart>, depth: usize) {
    let content_type_header = find_header(headers, "Content-Type").unwrap_or("text/plain");
    let media = content_type_header
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/")
        && depth < 8
        && let Some(boundary) = header_param(content_type_header, "boundary")
    {
        let delimiter = format!("--{boundary}");
        for (i, chunk) in body.split(delimiter.as_str()).enumerate() {
            // Chunk 0 is the preamble; a chunk starting with "--" follows the close.
            if i == 0 || chunk.starts_with("--") {
                continue;
            }
            let chunk = chunk
                .strip_prefix("\r\n")
                .or_else(|| chunk.strip_prefix('\n'))
                .unwrap_or(chunk);
            let (part_headers, part_body) = split_entity(chunk);
            collect_parts(&part_headers, part_body, out, depth + 1);
        }
        return;
    }
    let encoding = find_header(headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => {
            use base64::Engine as _;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        "quoted-printable" => quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| body.to_owned()),
        _ => body.to_owned(),
    };
    // Drop the line break that precedes the next boundary delimiter.
    let decoded = decoded
        .strip_suffix("\r\n")
        .or_else(|| decoded.strip_suffix('\n'))
        .map(str::to_owned)
        .unwrap_or(decoded);
    out.push(MailPart {
        content_type: media,
        headers: headers.to_vec(),
        body: decoded,
    });
}

/// Decodes RFC 2047 encoded words (`=?charset?B?...?=`, `=?charset?Q?...?=`) in a header value;
/// whitespace between two adjacent encoded words is dropped, as the RFC says. Charsets other
/// than UTF-8/ASCII are read as UTF-8 (lossy), which is all lettre produces.
pub fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_space = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, consumed)) = encoded_word(rest) {
            if !last_was_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[consumed..];
            last_was_word = true;
            continue;
        }
        let ch = rest.chars().next().expect("non-empty");
        if ch.is_whitespace() {
            pending_space.push(ch);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(ch);
            last_was_word = false;
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push_str(&pending_space);
    out
}

/// Decodes one encoded word at the start of `s`: (text, bytes consumed).
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, after_charset) = inner.split_once('?')?;
    let (encoding, after_encoding) = after_charset.split_once('?')?;
    let end = after_encoding.find("?=")?;
    let text = &after_encoding[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?
        }
        "Q" | "q" => {
            let underscores = text.replace('_', " ");
            quoted_printable::decode(underscores, quoted_printable::ParseMode::Robust).ok()?
        }
        _ => return None,
    };
    let consumed = s.len() - after_encoding.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(
            decode_rfc2047("=?utf-8?b?cHJvdsOhdmVs?= =?utf-8?q?_Supabase?= down"),
            "provável Supabase down"
        );
        assert_eq!(decode_rfc2047("plain  text"), "plain  text");
    }

    #[test]
    fn parses_multipart_mail() {
        let raw = "Subject: =?utf-8?b?w6k=?=\r\nX-RcptTo: a@x, b@y\r\n\
                   Content-Type: multipart/alternative;\r\n boundary=\"B\"\r\n\r\n\
                   --B\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\nol=C3=A1\r\n\
                   --B\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--B--\r\n";
        let mail = ReceivedMail::parse(Path::new("m").to_path_buf(), raw.as_bytes());
        assert_eq!(mail.subject().as_deref(), Some("é"));
        assert_eq!(mail.rcpt_to, vec!["a@x", "b@y"]);
        assert_eq!(mail.text().as_deref(), Some("olá"));
        assert_eq!(mail.html().as_deref(), Some("<p>x</p>"));
    }
}
