//! Moving bytes between a protocol endpoint ([`Client`](crate::Client) or
//! [`Daemon`](crate::Daemon)) and a non-blocking byte stream (a vchan, or
//! the in-memory pipe of [`mem`] in tests).
//!
//! The stream contract is the vchan one: `read` returns what is available
//! now (0 when nothing is), `write` takes what fits now (0 when the ring
//! is full); neither blocks. Errors are the stream's (closed, broken ring)
//! and end the connection.

use core::fmt;

use crate::error::QdbError;

/// A non-blocking, bidirectional byte stream (see the module doc).
pub trait ByteStream {
    /// Why the stream failed.
    type Error: fmt::Debug + fmt::Display;
    /// Read up to `buf.len()` bytes that are available now; 0 if none.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Write as much of `buf` as fits now; 0 if nothing fits.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error>;
}

/// One end of the QubesDB protocol, sans-IO.
pub trait Endpoint {
    /// Bytes waiting to be sent.
    fn output(&self) -> &[u8];
    /// `n` bytes of the output were sent.
    fn consume_output(&mut self, n: usize);
    /// Process received bytes; `Err` breaks the connection.
    fn receive(&mut self, bytes: &[u8]) -> Result<(), QdbError>;
    /// Whether to read more input now (false applies back-pressure).
    fn wants_input(&self) -> bool {
        true
    }
}

impl Endpoint for crate::Client {
    fn output(&self) -> &[u8] {
        crate::Client::output(self)
    }
    fn consume_output(&mut self, n: usize) {
        crate::Client::consume_output(self, n)
    }
    fn receive(&mut self, bytes: &[u8]) -> Result<(), QdbError> {
        crate::Client::receive(self, bytes)
    }
    fn wants_input(&self) -> bool {
        crate::Client::wants_input(self)
    }
}

impl Endpoint for crate::Daemon {
    fn output(&self) -> &[u8] {
        crate::Daemon::output(self)
    }
    fn consume_output(&mut self, n: usize) {
        crate::Daemon::consume_output(self, n)
    }
    fn receive(&mut self, bytes: &[u8]) -> Result<(), QdbError> {
        crate::Daemon::receive(self, bytes)
    }
}

/// Why [`pump`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum PumpError<E> {
    /// The stream failed.
    Stream(E),
    /// The peer broke the protocol (the endpoint is now broken).
    Protocol(QdbError),
}

impl<E: fmt::Display> fmt::Display for PumpError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PumpError::Stream(e) => write!(f, "QubesDB stream: {e}"),
            PumpError::Protocol(e) => e.fmt(f),
        }
    }
}

/// Size of the stack buffer [`pump`] reads into.
pub const PUMP_CHUNK: usize = 1024;

/// Move bytes both ways until neither direction makes progress: send the
/// endpoint's output as far as the stream takes it, feed it what the
/// stream has (while it wants input). Returns whether any byte moved.
pub fn pump<S: ByteStream + ?Sized, P: Endpoint + ?Sized>(
    peer: &mut P,
    stream: &mut S,
) -> Result<bool, PumpError<S::Error>> {
    let mut buf = [0u8; PUMP_CHUNK];
    let mut progress = false;
    loop {
        let mut moved = false;
        while !peer.output().is_empty() {
            let n = stream.write(peer.output()).map_err(PumpError::Stream)?;
            if n == 0 {
                break;
            }
            peer.consume_output(n);
            moved = true;
        }
        if peer.wants_input() {
            let n = stream.read(&mut buf).map_err(PumpError::Stream)?;
            if n > 0 {
                peer.receive(&buf[..n.min(buf.len())])
                    .map_err(PumpError::Protocol)?;
                moved = true;
            }
        }
        if !moved {
            return Ok(progress);
        }
        progress = true;
    }
}

/// An in-memory stream pair with bounded buffers, for tests: what one end
/// writes the other reads; a full buffer takes nothing, like a full ring.
#[cfg(any(test, feature = "std"))]
pub mod mem {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::ByteStream;

    #[derive(Debug)]
    struct Buf {
        data: VecDeque<u8>,
        cap: usize,
        closed: bool,
    }

    /// The stream was closed by [`MemStream::close`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Closed;

    impl core::fmt::Display for Closed {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("stream closed")
        }
    }

    /// One end of a [`pipe`].
    #[derive(Debug, Clone)]
    pub struct MemStream {
        rx: Arc<Mutex<Buf>>,
        tx: Arc<Mutex<Buf>>,
    }

    fn lock(b: &Mutex<Buf>) -> MutexGuard<'_, Buf> {
        b.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Two connected ends, each direction buffering at most `cap` bytes.
    pub fn pipe(cap: usize) -> (MemStream, MemStream) {
        let a = Arc::new(Mutex::new(Buf {
            data: VecDeque::new(),
            cap,
            closed: false,
        }));
        let b = Arc::new(Mutex::new(Buf {
            data: VecDeque::new(),
            cap,
            closed: false,
        }));
        (
            MemStream {
                rx: a.clone(),
                tx: b.clone(),
            },
            MemStream { rx: b, tx: a },
        )
    }

    impl MemStream {
        /// Close both directions: later reads (once drained) and writes on
        /// either end fail with [`Closed`].
        pub fn close(&self) {
            lock(&self.rx).closed = true;
            lock(&self.tx).closed = true;
        }

        /// Bytes waiting to be read by this end.
        pub fn readable(&self) -> usize {
            lock(&self.rx).data.len()
        }
    }

    impl ByteStream for MemStream {
        type Error = Closed;

        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Closed> {
            let mut b = lock(&self.rx);
            if b.data.is_empty() && b.closed {
                return Err(Closed);
            }
            let n = buf.len().min(b.data.len());
            for (dst, src) in buf.iter_mut().zip(b.data.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }

        fn write(&mut self, buf: &[u8]) -> Result<usize, Closed> {
            let mut b = lock(&self.tx);
            if b.closed {
                return Err(Closed);
            }
            let n = buf.len().min(b.cap - b.data.len());
            b.data.extend(&buf[..n]);
            Ok(n)
        }
    }
}
