//! How FerrisDB processes reach each other: every gRPC channel a role or the client library
//! opens goes through [`channel`], and every server listens on a [`Listener`] from [`bind`]
//! (the CLI's one-shot admin commands dial TCP directly). Both use TCP unless
//! a [`Transport`] was installed for the whole OS process — the deterministic simulator
//! installs its in-memory network, which runs many simulated processes (each with its own
//! addresses) in one OS process and can delay, cut and partition their connections.
//!
//! This is the network seam of the simulator, as `ferrisdb_storage::vfs::FileSystem` is its
//! disk seam: production code never installs anything and talks TCP to real addresses.

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// A replacement for TCP, installed once per OS process with [`install`].
pub trait Transport: Send + Sync + Debug + 'static {
    /// A channel to the peer named by `endpoint`'s URI, connecting lazily (on its first
    /// call, and again after the connection fails).
    fn channel(&self, endpoint: &Endpoint) -> Channel;
    /// Starts listening at `addr`.
    fn bind(&self, addr: SocketAddr) -> io::Result<Listener>;
}

static INSTALLED: OnceLock<Box<dyn Transport>> = OnceLock::new();

/// Makes `transport` carry every channel and listener of this OS process from now on.
/// The first call wins; returns false if a transport was installed before.
pub fn install(transport: Box<dyn Transport>) -> bool {
    INSTALLED.set(transport).is_ok()
}

/// A lazily connecting channel to `endpoint`: TCP, or the installed transport.
pub fn channel(endpoint: &Endpoint) -> Channel {
    match INSTALLED.get() {
        Some(transport) => transport.channel(endpoint),
        None => endpoint.connect_lazy(),
    }
}

/// A listener at `addr`: TCP, or the installed transport's.
pub async fn bind(addr: SocketAddr) -> io::Result<Listener> {
    match INSTALLED.get() {
        Some(transport) => transport.bind(addr),
        None => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
    }
}

/// Where a server accepts connections.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// An installed transport's listener.
    Memory(MemoryListener),
}

impl Listener {
    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Memory(listener) => Ok(listener.addr),
        }
    }

    /// The next connection and its peer's address. An installed transport's listener that
    /// was closed (its process died) fails with [`io::ErrorKind::NotConnected`] from then
    /// on: no connection will come again ([`is_closed`]).
    pub async fn accept(&mut self) -> io::Result<(Connection, SocketAddr)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Connection::Tcp(stream), peer))
            }
            Listener::Memory(listener) => match listener.incoming.recv().await {
                Some(accepted) => {
                    let peer = accepted.peer;
                    Ok((Connection::Memory(accepted), peer))
                }
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("the network stopped listening at {}", listener.addr),
                )),
            },
        }
    }
}

/// Whether `err`, from [`Listener::accept`], says the listener closed for good (an
/// installed transport's listener whose process died; a TCP listener never closes).
pub fn is_closed(listener: &Listener, err: &io::Error) -> bool {
    matches!(listener, Listener::Memory(_)) && err.kind() == io::ErrorKind::NotConnected
}

/// A byte stream an installed transport carries a connection on.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + Debug + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + Debug + 'static> ByteStream for T {}

/// One end of a connection an installed transport made, with both ends' addresses.
#[derive(Debug)]
pub struct MemoryConnection {
    /// The bytes.
    pub stream: Box<dyn ByteStream>,
    /// This end's address.
    pub local: SocketAddr,
    /// The other end's address.
    pub peer: SocketAddr,
}

/// An installed transport's listener: connections arrive on a queue the transport feeds.
#[derive(Debug)]
pub struct MemoryListener {
    addr: SocketAddr,
    incoming: mpsc::UnboundedReceiver<MemoryConnection>,
}

impl MemoryListener {
    /// A listener at `addr` and the queue the transport delivers its connections to (the
    /// listener stops once the sender is dropped).
    pub fn new(addr: SocketAddr) -> (MemoryListener, mpsc::UnboundedSender<MemoryConnection>) {
        let (tx, incoming) = mpsc::unbounded_channel();
        (MemoryListener { addr, incoming }, tx)
    }
}

/// An accepted connection.
#[derive(Debug)]
pub enum Connection {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A connection of an installed transport.
    Memory(MemoryConnection),
}

impl Connection {
    /// Sets `TCP_NODELAY` (small replies leave at once); nothing to do off TCP.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Connection::Tcp(stream) => stream.set_nodelay(nodelay),
            Connection::Memory(_) => Ok(()),
        }
    }

    /// Whether `TCP_NODELAY` is set (always true off TCP: nothing is held back).
    pub fn nodelay(&self) -> io::Result<bool> {
        match self {
            Connection::Tcp(stream) => stream.nodelay(),
            Connection::Memory(_) => Ok(true),
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Connection::Tcp(stream) => stream.connect_info(),
            Connection::Memory(c) => TcpConnectInfo {
                local_addr: Some(c.local),
                remote_addr: Some(c.peer),
            },
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Memory(c) => Pin::new(&mut c.stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Memory(c) => Pin::new(&mut c.stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Memory(c) => Pin::new(&mut c.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Memory(c) => Pin::new(&mut c.stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Connection::Memory(c) => Pin::new(&mut c.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tcp(stream) => stream.is_write_vectored(),
            Connection::Memory(c) => c.stream.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn without_a_transport_listeners_and_connections_are_tcp() {
        let mut listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(matches!(listener, Listener::Tcp(_)));
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        server.set_nodelay(true).unwrap();
        assert!(server.nodelay().unwrap());
        assert_eq!(server.connect_info().remote_addr, Some(peer));
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn a_memory_listener_hands_over_what_its_transport_delivers() {
        let addr: SocketAddr = "10.0.0.1:4500".parse().unwrap();
        let (listener, deliver) = MemoryListener::new(addr);
        let mut listener = Listener::Memory(listener);
        assert_eq!(listener.local_addr().unwrap(), addr);
        let (ours, mut theirs) = tokio::io::duplex(64);
        let peer: SocketAddr = "10.0.0.2:1".parse().unwrap();
        deliver
            .send(MemoryConnection {
                stream: Box::new(ours),
                local: addr,
                peer,
            })
            .unwrap();
        let (mut conn, from) = listener.accept().await.unwrap();
        assert_eq!(from, peer);
        assert_eq!(conn.connect_info().local_addr, Some(addr));
        conn.write_all(b"pong").await.unwrap();
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        drop(deliver);
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        assert!(is_closed(&listener, &err));
    }
}
