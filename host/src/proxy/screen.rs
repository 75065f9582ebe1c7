//! The client side of a connection hyper serves, wrapped so that hyper's
//! HTTP/1 server sees only requests that pass the proxy's own rules.
//!
//! hyper accepts some heads that a proxy must refuse (two `Host` fields, an
//! HTTP/1.1 request without one) and quietly serves a `Content-Length`
//! beside a `Transfer-Encoding` as chunked; its only answers of its own are
//! a bare 400 or 431. So the bytes from the client pass through this screen
//! first. It follows the requests' framing as they go (head, then body by
//! length or chunks, then the next head), checks every head with
//! [`check_request_head`], and holds a chunked request's head until its
//! first chunk-size line has arrived and is valid. A refused request is
//! never handed to hyper: the screen ends the stream there, hyper finishes
//! the responses it owes and closes, and the screen writes the refusal as
//! the last bytes of the connection.
//!
//! The wrapper also bounds writes: a client that takes nothing for
//! `proxy.client_write_timeout_ms` has its connection failed, on every
//! protocol.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::framing::{check_request_head, ClientLimits, Refusal, RequestBodyFraming};
use super::h1::ChunkedTracker;
use super::Proxy;
use crate::metrics::{Limit, Malformed};

/// Bytes asked of the client per read.
const READ_SIZE: usize = 8 * 1024;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// A client connection as hyper sees it.
pub(crate) struct ClientIo<S> {
    inner: S,
    proxy: Arc<Proxy>,
    /// HTTP/1 only; `None` for HTTP/2, whose framing is hyper's and h2's.
    screen: Option<Screen>,
    /// Runs while a write waits for the client.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<S> ClientIo<S> {
    /// An HTTP/1 connection, screened.
    pub(crate) fn screened(inner: S, proxy: Arc<Proxy>) -> Self {
        let limits = proxy.limits;
        ClientIo {
            inner,
            proxy,
            screen: Some(Screen::new(limits)),
            write_stall: None,
        }
    }

    /// An HTTP/2 connection: writes bounded, reads untouched.
    pub(crate) fn unscreened(inner: S, proxy: Arc<Proxy>) -> Self {
        ClientIo {
            inner,
            proxy,
            screen: None,
            write_stall: None,
        }
    }
}

struct Screen {
    limits: ClientLimits,
    /// Read from the client and not yet given to hyper.
    buffer: BytesMut,
    /// Bytes at the front of `buffer` checked and free for hyper to read.
    checked: usize,
    state: State,
    /// Runs while a head is begun and not whole.
    head_deadline: Option<Pin<Box<Sleep>>>,
    /// The refusal to write before the connection closes, and how much of
    /// it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// After a refusal, the client's further bytes are read and dropped
    /// until this runs out (see `h1::linger`); the bytes dropped so far.
    linger: Option<(Pin<Box<Sleep>>, usize)>,
    /// The write side is shut.
    shut: bool,
}

#[derive(Debug)]
enum State {
    /// At or in a request head.
    Head,
    /// In a body with this many bytes to come.
    Length(u64),
    /// In a chunked body.
    Chunked(ChunkedTracker),
    /// After an upgrade or a CONNECT: the bytes are the tunnel's.
    Tunnel,
    /// Refused, or the client closed: hyper reads the end of the stream.
    Ended,
}

impl Screen {
    fn new(limits: ClientLimits) -> Self {
        Screen {
            limits,
            buffer: BytesMut::new(),
            checked: 0,
            state: State::Head,
            head_deadline: None,
            answer: None,
            linger: None,
            shut: false,
        }
    }

    /// Checks what is buffered as far as it can; whether it got anywhere
    /// (bytes checked, or the state changed).
    fn examine(&mut self, proxy: &Proxy) -> bool {
        let pending = self.buffer.len() - self.checked;
        if pending == 0 {
            return false;
        }
        if matches!(self.state, State::Head) {
            return self.examine_head(proxy);
        }
        match &mut self.state {
            State::Head | State::Ended => false,
            State::Length(left) => {
                let take = (pending as u64).min(*left);
                *left -= take;
                self.checked += take as usize;
                if *left == 0 {
                    self.state = State::Head;
                }
                true
            }
            State::Chunked(tracker) => match tracker.feed(&self.buffer[self.checked..]) {
                Ok(Some(end)) => {
                    self.checked += end;
                    self.state = State::Head;
                    true
                }
                Ok(None) => {
                    self.checked = self.buffer.len();
                    true
                }
                Err(_) => {
                    // The head is hyper's already: the request's body ends
                    // here, and the proxy's service answers 400 for it.
                    self.end();
                    true
                }
            },
            State::Tunnel => {
                self.checked = self.buffer.len();
                true
            }
        }
    }

    fn examine_head(&mut self, proxy: &Proxy) -> bool {
        let limits = self.limits;
        let mut fields = vec![httparse::EMPTY_HEADER; limits.max_header_fields];
        let mut request = httparse::Request::new(&mut fields);
        let head_len = match request.parse(&self.buffer[self.checked..]) {
            Ok(httparse::Status::Partial) => {
                if self.buffer.len() - self.checked > limits.max_header_bytes {
                    self.refuse(proxy, &Refusal::head_too_large(&limits));
                    return true;
                }
                return false;
            }
            Err(error) => {
                self.refuse(proxy, &Refusal::unparsable(error, &limits));
                return true;
            }
            Ok(httparse::Status::Complete(len)) => len,
        };
        if head_len > limits.max_header_bytes {
            self.refuse(proxy, &Refusal::head_too_large(&limits));
            return true;
        }
        let framing = match check_request_head(request.version.unwrap_or(1), request.headers) {
            Ok(framing) => framing,
            Err(refusal) => {
                self.refuse(proxy, &refusal);
                return true;
            }
        };
        let has = |name: &str| {
            request
                .headers
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(name))
        };
        let tunnel = request.method == Some("CONNECT") || has("upgrade");
        let expects = has("expect");
        let next = match framing {
            _ if tunnel => State::Tunnel,
            RequestBodyFraming::Length(0) => State::Head,
            RequestBodyFraming::Length(length) => State::Length(length),
            // The client waits for `100 Continue` before its body: the head
            // goes on, and its chunks are checked as they come.
            RequestBodyFraming::Chunked if expects => State::Chunked(ChunkedTracker::default()),
            RequestBodyFraming::Chunked => {
                let rest = &self.buffer[self.checked + head_len..];
                let Some(line_end) = rest.iter().position(|b| *b == b'\n') else {
                    if rest.len() > MAX_CHUNK_LINE {
                        self.refuse(proxy, &bad_chunk());
                        return true;
                    }
                    // Held, as part of the head, until the line is here.
                    return false;
                };
                let mut tracker = ChunkedTracker::default();
                if line_end >= MAX_CHUNK_LINE || tracker.feed(&rest[..=line_end]).is_err() {
                    self.refuse(proxy, &bad_chunk());
                    return true;
                }
                self.checked += head_len + line_end + 1;
                self.head_deadline = None;
                self.state = State::Chunked(tracker);
                return true;
            }
        };
        self.checked += head_len;
        self.head_deadline = None;
        self.state = next;
        true
    }

    /// Refuses the request at the front of what is unchecked: what came
    /// before goes to hyper, nothing after, and the answer is written last.
    fn refuse(&mut self, proxy: &Proxy, refusal: &Refusal) {
        self.answer = Some((refusal.answer(proxy.counters()), 0));
        self.end();
    }

    /// Ends the stream for hyper after the bytes already checked.
    fn end(&mut self) {
        self.buffer.truncate(self.checked);
        self.state = State::Ended;
        self.head_deadline = None;
    }
}

fn bad_chunk() -> Refusal {
    Refusal::malformed(
        Malformed::BadChunk,
        "the request's first chunk-size line is malformed",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(screen) = &mut this.screen else {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        };
        loop {
            if screen.checked > 0 {
                let take = screen.checked.min(out.remaining());
                out.put_slice(&screen.buffer[..take]);
                screen.buffer.advance(take);
                screen.checked -= take;
                return Poll::Ready(Ok(()));
            }
            match screen.state {
                State::Ended => return Poll::Ready(Ok(())),
                // Past the screening, the tunnel reads the client directly.
                State::Tunnel if screen.buffer.is_empty() => {
                    return Pin::new(&mut this.inner).poll_read(cx, out)
                }
                _ => {}
            }
            if screen.examine(&this.proxy) {
                continue;
            }
            if matches!(screen.state, State::Head) && !screen.buffer.is_empty() {
                let limit = screen.limits.header_read_timeout;
                let deadline = screen
                    .head_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if deadline.as_mut().poll(cx).is_ready() {
                    let refusal = Refusal::limit(
                        Limit::HeaderTimeout,
                        format!(
                            "no whole request head within {} ms (proxy.header_read_timeout_ms)",
                            limit.as_millis()
                        ),
                    );
                    screen.refuse(&this.proxy, &refusal);
                    continue;
                }
            }
            let mut bytes = [0u8; READ_SIZE];
            let mut read = ReadBuf::new(&mut bytes);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client is done: a head or body begun is left unfinished.
                screen.end();
                continue;
            }
            screen.buffer.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Passes on a write's outcome, failing it once the client has taken
    /// nothing for `proxy.client_write_timeout_ms`.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_stall = None;
            return polled;
        }
        let limit = self.proxy.limits.client_write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stall.as_mut().poll(cx).is_ready() {
            self.proxy.counters().count_limit(Limit::ClientStall);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of its response within proxy.client_write_timeout_ms",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper closes once it has sent every response it owed: the refusal
        // of the request after them goes last.
        if let Some((answer, mut written)) = this.screen.as_mut().and_then(|s| s.answer.take()) {
            while written < answer.len() {
                let polled = Pin::new(&mut this.inner).poll_write(cx, &answer[written..]);
                match this.bounded(cx, polled) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(count)) => written += count,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {
                        if let Some(screen) = this.screen.as_mut() {
                            screen.answer = Some((answer, written));
                        }
                        return Poll::Pending;
                    }
                }
            }
            if let Some(screen) = this.screen.as_mut() {
                screen.linger = Some((Box::pin(tokio::time::sleep(super::h1::LINGER)), 0));
            }
        }
        let Some(screen) = this.screen.as_mut() else {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        };
        if !screen.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            screen.shut = true;
        }
        if let Some((timer, drained)) = &mut screen.linger {
            while *drained < super::h1::LINGER_BYTES && timer.as_mut().poll(cx).is_pending() {
                let mut sink = [0u8; READ_SIZE];
                let mut read = ReadBuf::new(&mut sink);
                match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                        *drained += read.filled().len();
                    }
                    Poll::Ready(_) => break,
                }
            }
            screen.linger = None;
        }
        Poll::Ready(Ok(()))
    }
}
