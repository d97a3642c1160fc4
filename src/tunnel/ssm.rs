//! AWS Systems Manager port forwarding: the AWS CLI's `start-session` with the
//! `AWS-StartPortForwardingSessionToRemoteHost` document, one child process per tunnel setting
//! and far end, forwarding a free loopback port that connections then dial. The child is watched,
//! restarted with backoff after it exits, and stopped when this process goes away.

use super::{Lost, LostError, SsmSpec};
use crate::error::{Error, TunnelFailure};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::process::ChildStdin;
use tokio::sync::{oneshot, watch};

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// The CLI's sockets close as it dies, a moment before its exit is reported: how long a connection
/// that hit the end of its stream waits to learn whether the session ended under it.
const EXIT_GRACE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// What the CLI prints once the local port accepts connections.
const READY_LINE: &str = "Waiting for connections";
const INSTALL: &str = "install the AWS CLI v2 and the Session Manager plugin (session-manager-plugin), as AWS's \
                       documentation for Session Manager describes, and make sure both are on PATH";

/// The command line, in one place to check against AWS's documentation.
pub fn command_line(spec: &SsmSpec, host: &str, port: u16, local_port: u16) -> Vec<String> {
    let mut args: Vec<String> = [
        "ssm",
        "start-session",
        "--target",
        &spec.target,
        "--document-name",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "--parameters",
        &format!("host={host},portNumber={port},localPortNumber={local_port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(r) = &spec.region {
        args.extend(["--region".to_string(), r.clone()]);
    }
    if let Some(p) = &spec.profile {
        args.extend(["--profile".to_string(), p.clone()]);
    }
    args
}

// The CLI runs under a small shell that kills it when our end of its stdin closes, which
// happens however this process ends (even SIGKILL): no orphaned session.
const WATCHDOG: &str = r#""$@" </dev/null & pid=$!
exec 3<&0
{ read -r _ <&3; kill "$pid" 2>/dev/null; } &
watcher=$!
wait "$pid"; status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

type Key = (SsmSpec, String, u16);
static SESSIONS: LazyLock<Mutex<HashMap<Key, Arc<Slot>>>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    failures: u32,
    last_failure: Option<Instant>,
}

struct Running {
    local_port: u16,
    /// `Some(why)` once the CLI has exited.
    exited: watch::Receiver<Option<String>>,
    /// Dropped with this, it makes the task that waits for the CLI kill it.
    _stop: oneshot::Sender<()>,
    /// Closing it stops the CLI (see [`WATCHDOG`]).
    _stdin: ChildStdin,
}

fn failure(failure: TunnelFailure, detail: String) -> Error {
    Error::Tunnel { failure, detail }
}

fn find_aws() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("aws")).find(|p| p.is_file())
}

/// TCP to the local end of the setting's port-forwarding session (started if needed).
pub async fn open(spec: &SsmSpec, host: &str, port: u16) -> Result<Connection, Error> {
    let slot = SESSIONS.lock().expect("sessions").entry((spec.clone(), host.to_string(), port)).or_default().clone();
    let mut st = slot.state.lock().await;
    let alive = st.running.as_ref().is_some_and(|r| r.exited.borrow().is_none());
    if !alive {
        st.running = None;
        if let Some(at) = st.last_failure {
            let wait = BACKOFF_FIRST.saturating_mul(1 << st.failures.min(6)).min(BACKOFF_MAX);
            tokio::time::sleep_until((at + wait).into()).await;
        }
        match start(spec, host, port).await {
            Ok(r) => {
                st.running = Some(r);
                st.failures = 0;
                st.last_failure = None;
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.last_failure = Some(Instant::now());
                return Err(e);
            }
        }
    }
    let Some((local, exited)) = st.running.as_ref().map(|r| (r.local_port, r.exited.clone())) else {
        return Err(failure(TunnelFailure::SsmSessionFailed, "the SSM session is not running".into()));
    };
    drop(st);
    let tcp = TcpStream::connect(("127.0.0.1", local)).await.map_err(|e| {
        failure(
            TunnelFailure::SsmSessionFailed,
            format!("the SSM session's local port 127.0.0.1:{local} refused the connection: {e}"),
        )
    })?;
    tcp.set_nodelay(true).ok();
    Ok(Connection { tcp, exited, lost: Lost::default(), end: End::Open })
}

async fn start(spec: &SsmSpec, host: &str, port: u16) -> Result<Running, Error> {
    let aws = find_aws()
        .ok_or_else(|| failure(TunnelFailure::SsmCliMissing, format!("aws was not found on PATH: {INSTALL}")))?;
    // A free port now; the CLI binds it a moment later (the same race ssh -L users live with).
    let local_port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failure(TunnelFailure::SsmSessionFailed, format!("no free local port: {e}")))?;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(&aws)
        .args(command_line(spec, host, port, local_port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failure(TunnelFailure::SsmSessionFailed, format!("could not start {}: {e}", aws.display())))?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failure(TunnelFailure::SsmSessionFailed, "the CLI's pipes are missing".into()));
    };
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = |said: Arc<Mutex<Vec<String>>>, line: String| {
        let mut s = said.lock().expect("output");
        if s.len() >= 20 {
            s.remove(0);
        }
        s.push(line);
    };
    {
        let said = said.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep(said.clone(), line);
            }
        });
    }
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let done = line.contains(READY_LINE);
                keep(said.clone(), line);
                if done {
                    break true;
                }
            }
            _ => break false,
        }
    };
    if !ready {
        let status = child.wait().await.ok().and_then(|s| s.code());
        let out = said.lock().expect("output").join(" | ");
        let missing = out.contains("SessionManagerPlugin is not found") || status == Some(127);
        return Err(if missing {
            failure(TunnelFailure::SsmCliMissing, format!("the Session Manager plugin is missing ({out}): {INSTALL}"))
        } else {
            failure(
                TunnelFailure::SsmSessionFailed,
                format!(
                    "aws ssm start-session --target {} exited (status {}) before forwarding: {out}",
                    spec.target,
                    status.map_or("none".to_string(), |c| c.to_string())
                ),
            )
        });
    }
    // Keep reading, so that the CLI never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (report, exited) = watch::channel(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let target = spec.target.clone();
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stopped => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let how = match status {
            Ok(s) => match s.code() {
                Some(code) => format!("status {code}"),
                None => "killed by a signal".into(),
            },
            Err(e) => format!("unknown status: {e}"),
        };
        let _ = report.send(Some(format!("aws ssm start-session --target {target} exited, {how}")));
    });
    Ok(Running { local_port, exited, _stop: stop, _stdin: stdin })
}

/// One connection through the SSM session's local port. Reads end with [`LostError`] rather
/// than a plain end of stream or reset when the CLI exited under it.
pub struct Connection {
    tcp: TcpStream,
    exited: watch::Receiver<Option<String>>,
    pub(super) lost: Lost,
    end: End,
}

/// Where a connection's stream is: open; ended, waiting (at most [`EXIT_GRACE`]) to learn
/// whether the CLI exited; or ended for good, with the end each later read gives again.
enum End {
    Open,
    Waiting(Pin<Box<dyn Future<Output = Option<String>> + Send>>, Ended),
    Settled(Ended),
}

#[derive(Clone)]
enum Ended {
    Eof,
    Failed(io::ErrorKind, String),
    Lost(String),
}

impl Connection {
    fn exited(&self) -> Option<String> {
        self.exited.borrow().clone()
    }

    fn lost_now(&self, why: String) -> io::Error {
        self.lost.set(why.clone());
        io::Error::new(io::ErrorKind::ConnectionAborted, LostError(why))
    }

    fn give(&self, how: Ended) -> Poll<io::Result<()>> {
        Poll::Ready(match how {
            Ended::Eof => Ok(()),
            Ended::Failed(kind, text) => Err(io::Error::new(kind, text)),
            Ended::Lost(why) => Err(self.lost_now(why)),
        })
    }

    /// The stream ended (`how`): waits for the CLI's exit to be reported, if it is coming.
    fn ended(&mut self, cx: &mut Context<'_>, how: Ended) -> Poll<io::Result<()>> {
        let mut exited = self.exited.clone();
        let wait = async move {
            let ended = tokio::time::timeout(EXIT_GRACE, exited.wait_for(Option::is_some)).await;
            ended.ok().and_then(|r| r.ok().and_then(|why| why.clone()))
        };
        self.end = End::Waiting(Box::pin(wait), how);
        self.poll_end(cx)
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let how = match &mut self.end {
            End::Open => return Poll::Ready(Ok(())),
            End::Settled(how) => how.clone(),
            End::Waiting(wait, how) => match wait.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(why)) => Ended::Lost(why),
                Poll::Ready(None) => how.clone(),
            },
        };
        self.end = End::Settled(how.clone());
        self.give(how)
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.end, End::Open) {
            return this.poll_end(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => this.ended(cx, Ended::Eof),
            Poll::Ready(Err(e)) => this.ended(cx, Ended::Failed(e.kind(), e.to_string())),
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write(cx, data) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.exited().map_or(e, |why| this.lost_now(why)))),
            other => other,
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.exited().map_or(e, |why| this.lost_now(why)))),
            other => other,
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;
    use crate::tunnel::SsmSpec;

    #[test]
    fn the_command_line() {
        let spec = SsmSpec { target: "i-0abc".into(), region: Some("eu-west-1".into()), profile: Some("ops".into()) };
        assert_eq!(
            command_line(&spec, "c.dsql.eu-west-1.on.aws", 5432, 40000).join(" "),
            "ssm start-session --target i-0abc --document-name AWS-StartPortForwardingSessionToRemoteHost \
             --parameters host=c.dsql.eu-west-1.on.aws,portNumber=5432,localPortNumber=40000 --region eu-west-1 \
             --profile ops"
        );
    }
}
