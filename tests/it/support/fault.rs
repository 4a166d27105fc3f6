//! A fault-injecting proxy between the daemon and one real peer, for the chaos tests.
//!
//! [`FaultProxy`] listens on `127.0.0.1:<port>` or on a Unix socket (the Docker Engine's transport)
//! and relays every connection byte for byte to the real peer behind it, TCP or Unix, until the test
//! sets a [`Fault`]:
//!
//! - [`Fault::Down`]: the listener is closed (a TCP connect is refused; the Unix socket file is gone);
//! - [`Fault::Hang`]: connections are accepted and read, and never answered;
//! - [`Fault::Garbage`]: each connection gets bytes that are no protocol at all, then is closed;
//! - [`Fault::Slow`]: each connection reaches the peer only after the delay.
//!
//! Changing the fault cuts every open connection (a long-lived one, such as a Redis connection or the
//! Docker events stream, would otherwise carry on past the fault), so the next request meets the new
//! fault. The proxy stops on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;

/// What the proxy does to the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relays to the peer.
    None,
    /// Not listening.
    Down,
    /// Accepts and never answers.
    Hang,
    /// Answers bytes of no protocol, then closes.
    Garbage,
    /// Relays after this delay.
    Slow(Duration),
}

/// What [`Fault::Garbage`] answers: binary noise and a line that no HTTP, RESP or SMTP parser accepts.
pub const GARBAGE: &[u8] =
    b"\x00\xff\xfe\x7f~~ this is not the protocol you are looking for ~~\r\n\r\n";

/// Where a proxy listens, or where its peer is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

/// A byte stream of either kind.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn bind(at: &Endpoint) -> std::io::Result<Self> {
        Ok(match at {
            Endpoint::Tcp(addr) => Self::Tcp(TcpListener::bind(addr).await?),
            Endpoint::Unix(path) => {
                let _ = std::fs::remove_file(path);
                Self::Unix(UnixListener::bind(path)?)
            }
        })
    }

    async fn accept(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Self::Tcp(l) => Box::new(l.accept().await?.0),
            Self::Unix(l) => Box::new(l.accept().await?.0),
        })
    }
}

async fn connect(to: &Endpoint) -> std::io::Result<Box<dyn Io>> {
    Ok(match to {
        Endpoint::Tcp(addr) => Box::new(TcpStream::connect(addr).await?),
        Endpoint::Unix(path) => Box::new(UnixStream::connect(path).await?),
    })
}

/// A running proxy; stops (and removes its socket file) on drop.
pub struct FaultProxy {
    fault: watch::Sender<Fault>,
    front: Endpoint,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on `127.0.0.1` (an ephemeral port) in front of `peer`, relaying.
    pub async fn tcp(peer: Endpoint) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let front = Endpoint::Tcp(listener.local_addr().expect("proxy address"));
        Self::start(front, Listener::Tcp(listener), peer)
    }

    /// A proxy on the Unix socket `path` in front of `peer`, relaying.
    pub async fn unix(path: &Path, peer: Endpoint) -> Self {
        let front = Endpoint::Unix(path.to_path_buf());
        let listener = Listener::bind(&front).await.expect("bind the proxy socket");
        Self::start(front, listener, peer)
    }

    fn start(front: Endpoint, listener: Listener, peer: Endpoint) -> Self {
        let (fault, rx) = watch::channel(Fault::None);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(
            front.clone(),
            listener,
            peer,
            rx,
            Arc::clone(&accepted),
        ));
        Self {
            fault,
            front,
            accepted,
            task,
        }
    }

    /// Switches to `fault`, cutting every open connection.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The port of a TCP proxy.
    pub fn port(&self) -> u16 {
        match &self.front {
            Endpoint::Tcp(addr) => addr.port(),
            Endpoint::Unix(path) => panic!("{} is a Unix socket proxy", path.display()),
        }
    }

    /// Connections accepted so far (under any fault but `Down`).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Endpoint::Unix(path) = &self.front {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Accepts under the current fault; at each change, drops the listener (closing it for `Down`) and
/// binds again for the others.
async fn serve(
    front: Endpoint,
    listener: Listener,
    peer: Endpoint,
    mut rx: watch::Receiver<Fault>,
    accepted: Arc<AtomicU64>,
) {
    let mut listener = Some(listener);
    loop {
        let fault = *rx.borrow_and_update();
        if fault == Fault::Down {
            drop(listener.take());
            if let Endpoint::Unix(path) = &front {
                let _ = std::fs::remove_file(path);
            }
        } else if listener.is_none() {
            // The port was ours a moment ago; rebinding it can race only with another process
            // grabbing it, which would fail this test loudly.
            listener = Some(Listener::bind(&front).await.expect("rebind the proxy"));
        }
        loop {
            let accept = async {
                match &listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                conn = accept => {
                    let Ok(conn) = conn else { continue };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(handle(conn, peer.clone(), fault, rx.clone()));
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// One connection under `fault`, cut when the fault changes.
async fn handle(
    mut conn: Box<dyn Io>,
    peer: Endpoint,
    fault: Fault,
    mut rx: watch::Receiver<Fault>,
) {
    let work = async {
        match fault {
            Fault::None | Fault::Down => relay(&mut conn, &peer).await,
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                relay(&mut conn, &peer).await;
            }
            Fault::Hang => {
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                std::future::pending::<()>().await;
            }
            Fault::Garbage => {
                // Let a client that speaks first (HTTP, RESP) send its request, so it reads the
                // garbage as the answer instead of failing to write; a server-first protocol (SMTP)
                // gets it as its greeting.
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await;
                let _ = conn.write_all(GARBAGE).await;
                let _ = conn.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
    };
    tokio::select! {
        () = work => {}
        _ = rx.changed() => {}
    }
}

async fn relay(conn: &mut Box<dyn Io>, peer: &Endpoint) {
    if let Ok(mut upstream) = connect(peer).await {
        let _ = tokio::io::copy_bidirectional(conn, &mut upstream).await;
    }
}
