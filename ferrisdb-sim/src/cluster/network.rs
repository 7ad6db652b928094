//! The simulated network: every channel and listener of the simulated processes goes through
//! [`SimTransport`] (installed as the OS process's `ferrisdb_proto::transport`), which
//! connects them with in-memory byte streams instead of TCP. Process N has address 10.0.0.N;
//! a listener belongs to the process that bound it; a connection runs HTTP/2 (real tonic and
//! hyper code) over a pair of streams the network can cut.
//!
//! Faults: a partition between two processes cuts every connection between them (reads and
//! writes fail with `ConnectionReset`, as when TCP gives up) and makes new connections time
//! out until it heals; a connection to an address nobody listens at is refused. A killed
//! process ([`SimNetwork::kill`]) loses its listeners and connections at once, as the kernel
//! closes a dead process's sockets, and the tasks of its dead life cannot connect again.
//!
//! A thread runs at most one simulation, and the network of the simulation running on the
//! current thread ([`SimNetwork::enter`]) is the one used; on a thread with none, the
//! transport falls back to TCP, so other tests in the same binary are unaffected.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ferrisdb_proto::transport::{Listener, MemoryConnection, MemoryListener, Transport};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint, Uri};

use super::events;
use super::process::{self, Incarnation, ProcessId};

/// Bytes buffered in each direction of a connection before the writer waits.
const STREAM_BUFFER: usize = 256 * 1024;
/// How long a connection attempt across a partition hangs before it times out.
const PARTITIONED_CONNECT: Duration = Duration::from_secs(3);
/// Each write's bytes land after a latency drawn up to this (microseconds), plus the
/// link's extra latency while it is slow.
const LATENCY_MAX_MICROS: u64 = 1000;

/// The address of simulated process `process`.
pub fn process_ip(process: ProcessId) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, process)
}

/// What the network did, for the run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections made.
    pub connections: u64,
    /// Connections refused (nobody listening).
    pub refused: u64,
    /// Connection attempts across a partition (each hangs, then fails).
    pub blocked: u64,
    /// Connections cut by a partition or a kill.
    pub cut: u64,
    /// Processes killed.
    pub kills: u64,
    /// One-way partitions made (a direction clogged: nothing it carries lands until healed).
    pub clogs: u64,
    /// Links slowed (extra latency both ways until healed).
    pub slowed: u64,
    /// Processes paused (all their traffic held both ways until healed).
    pub pauses: u64,
}

/// One simulation's network; clones share it.
#[derive(Debug, Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<NetState>>,
}

impl Default for SimNetwork {
    fn default() -> Self {
        SimNetwork::new(0)
    }
}

#[derive(Debug)]
struct NetState {
    /// Seeds each new connection's latency draws.
    rng: StdRng,
    listeners: BTreeMap<SocketAddr, Listening>,
    connections: Vec<Link>,
    /// Unordered pairs of processes that cannot reach each other.
    partitions: BTreeSet<(ProcessId, ProcessId)>,
    /// Directions (from, to) whose bytes do not land until healed.
    clogs: BTreeSet<(ProcessId, ProcessId)>,
    /// Unordered pairs whose links carry extra latency until healed.
    slow: BTreeMap<(ProcessId, ProcessId), Duration>,
    /// Processes whose traffic, both ways, does not land until healed.
    paused: BTreeSet<ProcessId>,
    next_port: u16,
    stats: NetStats,
}

#[derive(Debug)]
struct Listening {
    process: ProcessId,
    deliver: UnboundedSender<MemoryConnection>,
}

#[derive(Debug)]
struct Link {
    client: ProcessId,
    server: ProcessId,
    cut: Arc<Cut>,
    to_server: Arc<Pipe>,
    to_client: Arc<Pipe>,
}

impl Link {
    fn ends(&self) -> (ProcessId, ProcessId) {
        pair(self.client, self.server)
    }

    /// The pipe carrying bytes from `from` to `to`, if this link joins them.
    fn direction(&self, from: ProcessId, to: ProcessId) -> Option<&Arc<Pipe>> {
        if (self.client, self.server) == (from, to) {
            Some(&self.to_server)
        } else if (self.server, self.client) == (from, to) {
            Some(&self.to_client)
        } else {
            None
        }
    }
}

impl NetState {
    /// Whether what `from` sends `to` is held (a one-way partition, or either end paused).
    fn holds(&self, from: ProcessId, to: ProcessId) -> bool {
        self.clogs.contains(&(from, to)) || self.paused.contains(&from) || self.paused.contains(&to)
    }

    /// Cuts (and forgets) every connection `which` picks.
    fn cut_links(&mut self, which: impl Fn(&Link) -> bool) {
        let before = self.connections.len();
        self.connections.retain(|link| {
            if which(link) {
                link.cut.cut();
                false
            } else {
                true
            }
        });
        self.stats.cut += (before - self.connections.len()) as u64;
    }
}

fn pair(a: ProcessId, b: ProcessId) -> (ProcessId, ProcessId) {
    (a.min(b), a.max(b))
}

thread_local! {
    static ENTERED: RefCell<Option<SimNetwork>> = const { RefCell::new(None) };
}

/// Keeps a network entered on this thread; leaves it when dropped.
#[derive(Debug)]
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        ENTERED.with(|n| n.borrow_mut().take());
    }
}

impl SimNetwork {
    /// A network whose latency draws follow `seed`.
    pub fn new(seed: u64) -> SimNetwork {
        SimNetwork {
            state: Arc::new(Mutex::new(NetState {
                rng: StdRng::seed_from_u64(seed),
                listeners: BTreeMap::new(),
                connections: Vec::new(),
                partitions: BTreeSet::new(),
                clogs: BTreeSet::new(),
                slow: BTreeMap::new(),
                paused: BTreeSet::new(),
                next_port: 0,
                stats: NetStats::default(),
            })),
        }
    }

    /// Makes this the network of the simulation running on this thread (installing
    /// [`SimTransport`] for the OS process if no transport is installed yet).
    pub fn enter(&self) -> Entered {
        // Another test of this binary may have installed it already: either way it is ours.
        ferrisdb_proto::transport::install(Box::new(SimTransport));
        ENTERED.with(|n| *n.borrow_mut() = Some(self.clone()));
        Entered(())
    }

    fn entered() -> Option<SimNetwork> {
        ENTERED.with(|n| n.borrow().clone())
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.state.lock().stats
    }

    /// Cuts `a` off from `b` (both ways): their connections fail and new ones hang, then
    /// fail, until [`heal`](Self::heal).
    pub fn partition(&self, a: ProcessId, b: ProcessId) {
        let mut state = self.state.lock();
        state.partitions.insert(pair(a, b));
        state.cut_links(|link| link.ends() == pair(a, b));
    }

    /// Clogs the direction from `from` to `to` (a one-way partition): what `from` sends
    /// `to`, on its connections old and new, does not land until [`heal`](Self::heal) —
    /// as TCP retransmits into a link that drops every packet one way — while the other
    /// direction flows.
    pub fn clog(&self, from: ProcessId, to: ProcessId) {
        let mut state = self.state.lock();
        state.clogs.insert((from, to));
        for link in &state.connections {
            if let Some(pipe) = link.direction(from, to) {
                pipe.set_clogged(true);
            }
        }
        state.stats.clogs += 1;
    }

    /// Adds `extra` latency to everything sent between `a` and `b`, both ways, until
    /// [`heal`](Self::heal).
    pub fn slow(&self, a: ProcessId, b: ProcessId, extra: Duration) {
        let mut state = self.state.lock();
        state.slow.insert(pair(a, b), extra);
        for link in &state.connections {
            if link.ends() == pair(a, b) {
                link.to_server.set_extra(extra);
                link.to_client.set_extra(extra);
            }
        }
        state.stats.slowed += 1;
    }

    /// Pauses `process`, as a stopped process (SIGSTOP), a long garbage-collection pause or
    /// a frozen virtual machine would seem to the others: nothing it sends lands and nothing
    /// sent to it is read, on its connections old and new, until [`heal`](Self::heal); the
    /// bytes are held, not dropped, and land in order once it resumes — an answer it
    /// computed before the pause arrives after it. Unlike a real pause, its own tasks and
    /// timers keep running (a lease it holds expires on its clock while it is paused, and
    /// what it decided meanwhile goes out at once when it resumes).
    pub fn pause(&self, process: ProcessId) {
        let mut state = self.state.lock();
        state.paused.insert(process);
        for link in &state.connections {
            if link.client == process || link.server == process {
                link.to_server.set_clogged(true);
                link.to_client.set_clogged(true);
            }
        }
        state.stats.pauses += 1;
    }

    /// Heals every partition, clog, slow link and pause.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        state.partitions.clear();
        state.clogs.clear();
        state.slow.clear();
        state.paused.clear();
        for link in &state.connections {
            for pipe in [&link.to_server, &link.to_client] {
                pipe.set_extra(Duration::ZERO);
                pipe.set_clogged(false);
            }
        }
    }

    /// `process` died: its listeners close and its connections break. Call it with
    /// [`process::kill`], which keeps the dead life's tasks from connecting again.
    pub fn kill(&self, process: ProcessId) {
        let mut state = self.state.lock();
        state.listeners.retain(|_, l| l.process != process);
        state.cut_links(|link| link.client == process || link.server == process);
        state.stats.kills += 1;
    }

    fn bind(&self, incarnation: Incarnation, addr: SocketAddr) -> io::Result<Listener> {
        let process = incarnation.process;
        if !process::is_alive(incarnation) {
            return Err(dead(process));
        }
        if addr.ip() != process_ip(process) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "process {process} (address {}) cannot listen at {addr}",
                    process_ip(process)
                ),
            ));
        }
        let mut state = self.state.lock();
        if state
            .listeners
            .get(&addr)
            .is_some_and(|l| !l.deliver.is_closed())
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is in use"),
            ));
        }
        let (listener, deliver) = MemoryListener::new(addr);
        state.listeners.insert(addr, Listening { process, deliver });
        Ok(Listener::Memory(listener))
    }

    async fn connect(&self, incarnation: Incarnation, uri: &Uri) -> io::Result<SimStream> {
        let from = incarnation.process;
        if !process::is_alive(incarnation) {
            self.state.lock().stats.refused += 1;
            return Err(dead(from));
        }
        let target: SocketAddr = uri
            .authority()
            .and_then(|a| a.as_str().parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the simulated network connects to ip:port addresses, not {uri}"),
                )
            })?;
        let partitioned = {
            let mut state = self.state.lock();
            let to = match state.listeners.get(&target) {
                Some(l) if !l.deliver.is_closed() => l.process,
                _ => {
                    state.stats.refused += 1;
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("nothing listens at {target}"),
                    ));
                }
            };
            state.partitions.contains(&pair(from, to))
        };
        if partitioned {
            self.state.lock().stats.blocked += 1;
            tokio::time::sleep(PARTITIONED_CONNECT).await;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {target}: no answer (partitioned)"),
            ));
        }
        let mut state = self.state.lock();
        let Some(listening) = state.listeners.get(&target) else {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens at {target}"),
            ));
        };
        let (to, deliver) = (listening.process, listening.deliver.clone());
        let extra = state.slow.get(&pair(from, to)).copied().unwrap_or_default();
        let serial = state.stats.connections;
        let to_server = Pipe::new(
            format!("{from}->{to}#{serial}"),
            state.rng.random(),
            extra,
            state.holds(from, to),
        );
        let to_client = Pipe::new(
            format!("{to}->{from}#{serial}"),
            state.rng.random(),
            extra,
            state.holds(to, from),
        );
        let cut = Arc::new(Cut::default());
        state.next_port = state.next_port.wrapping_add(1).max(1);
        let local = SocketAddr::new(process_ip(from).into(), 32768 + state.next_port % 28000);
        let accepted = MemoryConnection {
            stream: Box::new(SimStream {
                incoming: to_server.clone(),
                outgoing: to_client.clone(),
                cut: cut.clone(),
                in_flight: None,
            }),
            local: target,
            peer: local,
        };
        if deliver.send(accepted).is_err() {
            state.stats.refused += 1;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{target} stopped listening"),
            ));
        }
        state.stats.connections += 1;
        // Forget connections both ends have dropped.
        state
            .connections
            .retain(|link| Arc::strong_count(&link.cut) > 1);
        state.connections.push(Link {
            client: from,
            server: to,
            cut: cut.clone(),
            to_server: to_server.clone(),
            to_client: to_client.clone(),
        });
        Ok(SimStream {
            incoming: to_client,
            outgoing: to_server,
            cut,
            in_flight: None,
        })
    }
}

fn dead(process: ProcessId) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("process {process} was killed: the tasks of its dead life cannot use the network"),
    )
}

/// The OS process's transport while simulations run: each thread's entered network, TCP on a
/// thread without one.
#[derive(Debug)]
pub struct SimTransport;

impl Transport for SimTransport {
    fn channel(&self, endpoint: &Endpoint) -> Channel {
        let Some(network) = SimNetwork::entered() else {
            return endpoint.connect_lazy();
        };
        // The process creating the channel is the one every connection of it comes from
        // (tonic reconnects from a task of its own).
        let from = process::current_incarnation().unwrap_or(process::incarnation(0));
        endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
            let network = network.clone();
            async move { network.connect(from, &uri).await.map(TokioIo::new) }
        }))
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<Listener> {
        match SimNetwork::entered() {
            Some(network) => network.bind(
                process::current_incarnation().unwrap_or(process::incarnation(0)),
                addr,
            ),
            None => {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(Listener::Tcp(tokio::net::TcpListener::from_std(listener)?))
            }
        }
    }
}

/// Whether a connection was cut, and who waits on it.
#[derive(Debug, Default)]
struct Cut {
    done: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Cut {
    fn cut(&self) {
        self.done.store(true, Ordering::Release);
        for waker in self.waiting.lock().drain(..) {
            waker.wake();
        }
    }

    fn is_cut(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn wait(&self, cx: &Context<'_>) {
        let mut waiting = self.waiting.lock();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
    }
}

/// Bytes written into a [`Pipe`], readable from `at`.
#[derive(Debug)]
struct Chunk {
    at: Instant,
    bytes: Vec<u8>,
    /// How much of `bytes` was read already.
    read: usize,
}

/// One direction of a connection: what was written, each chunk deliverable after its
/// latency, in order.
#[derive(Debug)]
struct Pipe {
    /// `from->to#connection`, for the trace.
    label: String,
    state: Mutex<PipeState>,
}

#[derive(Debug)]
struct PipeState {
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks` not yet read.
    buffered: usize,
    /// Latest delivery time given so far (chunks are delivered in order).
    last_at: Instant,
    /// Latency draws of this direction.
    rng: StdRng,
    /// Added to every chunk's latency while the link is slow.
    extra: Duration,
    /// Nothing is delivered while clogged (a one-way partition); it flows again on heal.
    clogged: bool,
    writer_closed: bool,
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Pipe {
    fn new(label: String, seed: u64, extra: Duration, clogged: bool) -> Arc<Pipe> {
        Arc::new(Pipe {
            label,
            state: Mutex::new(PipeState {
                chunks: VecDeque::new(),
                buffered: 0,
                last_at: Instant::now(),
                rng: StdRng::seed_from_u64(seed),
                extra,
                clogged,
                writer_closed: false,
                reader_gone: false,
                reader: None,
                writer: None,
            }),
        })
    }

    fn set_clogged(&self, clogged: bool) {
        let mut state = self.state.lock();
        state.clogged = clogged;
        if !clogged && let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    fn set_extra(&self, extra: Duration) {
        self.state.lock().extra = extra;
    }
}

/// One end of a simulated connection: reads from one pipe, writes to the other.
#[derive(Debug)]
struct SimStream {
    incoming: Arc<Pipe>,
    outgoing: Arc<Pipe>,
    cut: Arc<Cut>,
    /// Wakes a reader whose next chunk is still in flight.
    in_flight: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection cut by the simulated network",
    )
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.cut.is_cut() {
                return Poll::Ready(Err(reset()));
            }
            let now = Instant::now();
            let next_at = {
                let mut state = self.incoming.state.lock();
                if state.clogged {
                    state.reader = Some(cx.waker().clone());
                    None
                } else {
                    let mut copied = 0;
                    while buf.remaining() > 0 {
                        let Some(chunk) = state.chunks.front_mut() else {
                            break;
                        };
                        if chunk.at > now {
                            break;
                        }
                        let n = buf.remaining().min(chunk.bytes.len() - chunk.read);
                        buf.put_slice(&chunk.bytes[chunk.read..chunk.read + n]);
                        chunk.read += n;
                        copied += n;
                        if chunk.read == chunk.bytes.len() {
                            state.chunks.pop_front();
                        }
                    }
                    if copied > 0 {
                        state.buffered -= copied;
                        if let Some(writer) = state.writer.take() {
                            writer.wake();
                        }
                        return Poll::Ready(Ok(()));
                    }
                    match state.chunks.front() {
                        Some(chunk) => Some(chunk.at),
                        // Nothing more will come: end of stream.
                        None if state.writer_closed => return Poll::Ready(Ok(())),
                        None => {
                            state.reader = Some(cx.waker().clone());
                            None
                        }
                    }
                }
            };
            self.cut.wait(cx);
            let Some(at) = next_at else {
                return Poll::Pending;
            };
            // The next chunk is in flight: wake up when it lands.
            let sleep = match &mut self.in_flight {
                Some(sleep) => {
                    sleep.as_mut().reset(at);
                    sleep
                }
                slot => slot.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(reset()));
        }
        let mut state = self.outgoing.state.lock();
        if state.reader_gone {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the simulated connection is closed",
            )));
        }
        if state.buffered >= STREAM_BUFFER {
            state.writer = Some(cx.waker().clone());
            drop(state);
            self.cut.wait(cx);
            return Poll::Pending;
        }
        let n = buf.len().min(STREAM_BUFFER - state.buffered);
        let latency = Duration::from_micros(state.rng.random_range(0..=LATENCY_MAX_MICROS));
        let at = (Instant::now() + latency + state.extra).max(state.last_at);
        state.last_at = at;
        state.chunks.push_back(Chunk {
            at,
            bytes: buf[..n].to_vec(),
            read: 0,
        });
        state.buffered += n;
        events::record_with_bytes(
            || {
                format!(
                    "net {} {n} {:016x}",
                    self.outgoing.label,
                    events::fingerprint(&buf[..n])
                )
            },
            &buf[..n],
        );
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(reset()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.outgoing.state.lock();
        state.writer_closed = true;
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        {
            let mut state = self.outgoing.state.lock();
            state.writer_closed = true;
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }
        let mut state = self.incoming.state.lock();
        state.reader_gone = true;
        state.chunks.clear();
        state.buffered = 0;
        if let Some(writer) = state.writer.take() {
            writer.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic::transport::server::Connected;

    use super::*;

    fn at(process: ProcessId) -> SocketAddr {
        SocketAddr::new(process_ip(process).into(), 4500)
    }

    fn life(process: ProcessId) -> Incarnation {
        process::incarnation(process)
    }

    fn uri(process: ProcessId) -> Uri {
        format!("http://{}", at(process)).parse().unwrap()
    }

    async fn accept(listener: &mut Listener) -> ferrisdb_proto::transport::Connection {
        listener.accept().await.unwrap().0
    }

    #[tokio::test]
    async fn a_process_listens_only_at_its_own_address_and_once() {
        let network = SimNetwork::default();
        let err = network.bind(life(1), at(2)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        let _listener = network.bind(life(1), at(1)).unwrap();
        let err = network.bind(life(1), at(1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = network.connect(life(2), &uri(3)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(network.stats().refused, 1);
    }

    #[tokio::test]
    async fn a_partition_cuts_connections_and_blocks_new_ones_until_healed() {
        let network = SimNetwork::default();
        let mut listener = network.bind(life(1), at(1)).unwrap();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let mut server = accept(&mut listener).await;
        assert_eq!(
            server.connect_info().remote_addr.map(|a| a.ip()),
            Some(process_ip(2).into())
        );
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        // A reader waiting when the partition comes is woken with the error.
        let waiting = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            server.read(&mut byte).await
        });
        tokio::task::yield_now().await;
        network.partition(1, 2);
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(
            client.write_all(b"x").await.unwrap_err().kind(),
            io::ErrorKind::ConnectionReset
        );
        assert_eq!(network.stats().cut, 1);

        // A new connection across the partition hangs.
        let target = uri(1);
        let attempt =
            tokio::time::timeout(Duration::from_millis(50), network.connect(life(2), &target));
        assert!(attempt.await.is_err(), "connected across a partition");
        assert_eq!(network.stats().blocked, 1);
        // Other pairs are unaffected.
        assert!(network.connect(life(3), &uri(1)).await.is_ok());

        network.heal();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let _ = accept(&mut listener).await; // the one from process 3
        let mut server = accept(&mut listener).await;
        client.write_all(b"again").await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"again");
        assert_eq!(network.stats().connections, 3);
    }

    #[tokio::test]
    async fn a_killed_process_loses_its_listener_and_connections_and_its_old_life_stays_offline() {
        process::reset_lives();
        let network = SimNetwork::default();
        let _listener = network.bind(life(1), at(1)).unwrap();
        let mut server_side = network.bind(life(2), at(2)).unwrap();
        let old_life = life(1);
        let mut client = network.connect(old_life, &uri(2)).await.unwrap();
        let _accepted = accept(&mut server_side).await;

        process::kill(1);
        network.kill(1);
        assert_eq!(network.stats().kills, 1);
        assert_eq!(
            client.write_all(b"x").await.unwrap_err().kind(),
            io::ErrorKind::ConnectionReset
        );
        // Its listener is gone: nobody answers at its address until it binds again.
        let err = network.connect(life(3), &uri(1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // The dead life's tasks can neither connect nor listen.
        let err = network.connect(old_life, &uri(2)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        assert!(network.bind(old_life, at(1)).is_err());
        // The new life can do both.
        let _listener = network.bind(life(1), at(1)).unwrap();
        assert!(network.connect(life(1), &uri(2)).await.is_ok());
        assert!(network.connect(life(3), &uri(1)).await.is_ok());
        process::reset_lives();
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_land_in_order_after_their_latency_and_a_slow_link_adds_to_it() {
        let network = SimNetwork::new(9);
        let mut listener = network.bind(life(1), at(1)).unwrap();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let mut server = accept(&mut listener).await;
        let sent = Instant::now();
        for part in [&b"one "[..], b"two ", b"three"] {
            client.write_all(part).await.unwrap();
        }
        let mut got = [0u8; 13];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
        assert!(sent.elapsed() <= Duration::from_micros(LATENCY_MAX_MICROS));

        network.slow(1, 2, Duration::from_millis(300));
        let sent = Instant::now();
        server.write_all(b"late").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(network.stats().slowed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_way_partition_holds_one_direction_until_healed() {
        let network = SimNetwork::new(10);
        let mut listener = network.bind(life(1), at(1)).unwrap();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let mut server = accept(&mut listener).await;
        network.clog(2, 1);
        client.write_all(b"held").await.unwrap();
        let mut got = [0u8; 4];
        let held = tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut got));
        assert!(held.await.is_err(), "bytes crossed a clogged direction");
        // The other direction flows.
        server.write_all(b"back").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
        // A new connection is clogged the same way.
        let mut second = network.connect(life(2), &uri(1)).await.unwrap();
        let mut second_server = accept(&mut listener).await;
        second.write_all(b"also").await.unwrap();
        network.heal();
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"held");
        second_server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"also");
        assert_eq!(network.stats().clogs, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_process_neither_sends_nor_receives_until_healed_and_nothing_is_lost() {
        let network = SimNetwork::new(12);
        let mut listener = network.bind(life(1), at(1)).unwrap();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let mut server = accept(&mut listener).await;
        // An answer written just before the pause is held with everything after it.
        server.write_all(b"answer").await.unwrap();
        network.pause(1);
        client.write_all(b"ask").await.unwrap();
        let mut six = [0u8; 6];
        let mut three = [0u8; 3];
        let waited = tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut six));
        assert!(waited.await.is_err(), "bytes left a paused process");
        let waited = tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut three));
        assert!(waited.await.is_err(), "a paused process read bytes");
        // A connection made to it during the pause is held too; other processes talk on.
        let mut second = network.connect(life(3), &uri(1)).await.unwrap();
        let mut second_server = accept(&mut listener).await;
        second.write_all(b"new").await.unwrap();
        let mut listener_3 = network.bind(life(3), at(3)).unwrap();
        let mut third = network.connect(life(2), &uri(3)).await.unwrap();
        let mut third_server = accept(&mut listener_3).await;
        third.write_all(b"hi").await.unwrap();
        let mut two = [0u8; 2];
        third_server.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
        network.heal();
        client.read_exact(&mut six).await.unwrap();
        assert_eq!(&six, b"answer");
        server.read_exact(&mut three).await.unwrap();
        assert_eq!(&three, b"ask");
        second_server.read_exact(&mut three).await.unwrap();
        assert_eq!(&three, b"new");
        assert_eq!(network.stats().pauses, 1);
    }

    #[tokio::test]
    async fn a_closed_end_reads_as_end_of_stream_and_refuses_writes() {
        let network = SimNetwork::new(11);
        let mut listener = network.bind(life(1), at(1)).unwrap();
        let mut client = network.connect(life(2), &uri(1)).await.unwrap();
        let mut server = accept(&mut listener).await;
        client.write_all(b"bye").await.unwrap();
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        let err = server.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
