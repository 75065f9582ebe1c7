//! `wasi:io` (poll and streams) for plugins, answered without ever waiting.
//!
//! wasmtime-wasi's synchronous `wasi:io` runs each blocking call
//! (`pollable.block`, `poll`, `blocking-write-and-flush`, a stream's drop)
//! by blocking on the Tokio runtime the calling thread is in. A plugin is
//! called from inside a proxy worker's runtime, where that panics the
//! worker: a guest that printed (Python's `print`, QuickJS's `console`) or
//! slept would fail the request it was placing. Here those calls are
//! answered at once instead, shadowing wasmtime-wasi's definitions:
//!
//! - every pollable is ready: a sleep ends at once, and a guest that loops
//!   waiting on a clock runs into its CPU budget;
//! - a blocking write or flush writes what the stream takes now (a
//!   plugin's stdout and stderr take everything, into its log) and traps if
//!   it would have to wait;
//! - a blocking read answers what is there (a plugin's stdin is closed);
//! - a stream is dropped at once.
//!
//! Every call that does not block is wasmtime-wasi's own.

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError};

type StreamResult<T> = Result<T, StreamError>;

/// The resource table, reached for `wasi:io` calls.
pub(crate) struct NonBlocking<'a>(pub &'a mut ResourceTable);

/// The `HasData` of [`NonBlocking`].
pub(crate) struct NonBlockingIo;

impl HasData for NonBlockingIo {
    type Data<'a> = NonBlocking<'a>;
}

/// Adds the non-blocking `wasi:io/poll` and `wasi:io/streams` to `linker`,
/// in place of wasmtime-wasi's (which must be added first).
pub(crate) fn shadow_blocking_io<T: wasmtime_wasi::WasiView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<T, NonBlockingIo>(linker, |state| NonBlocking(state.ctx().table))?;
    streams::add_to_linker::<T, NonBlockingIo>(linker, |state| NonBlocking(state.ctx().table))?;
    linker.allow_shadowing(false);
    Ok(())
}

fn would_wait(what: &str) -> StreamError {
    StreamError::trap(&format!(
        "{what} would wait, and a plugin is never made to wait"
    ))
}

impl poll::Host for NonBlocking<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        if pollables.is_empty() {
            wasmtime::bail!("poll of an empty list");
        }
        Ok((0..pollables.len() as u32).collect())
    }
}

impl poll::HostPollable for NonBlocking<'_> {
    fn ready(&mut self, _pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Ok(true)
    }

    fn block(&mut self, _pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        Ok(())
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.0, pollable)
    }
}

impl streams::Host for NonBlocking<'_> {
    fn convert_stream_error(
        &mut self,
        error: StreamError,
    ) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, error)
    }
}

impl streams::HostOutputStream for NonBlocking<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        drop(self.0.delete(stream)?);
        Ok(())
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let out = self.0.get_mut(&stream)?;
        if out.check_write()? < bytes.len() {
            return Err(would_wait("a blocking write"));
        }
        out.write(bytes.into())?;
        out.flush()
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let out = self.0.get_mut(&stream)?;
        if (out.check_write()? as u64) < len {
            return Err(would_wait("a blocking write"));
        }
        out.write_zeroes(len as usize)?;
        out.flush()
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.0.get_mut(&stream)?.flush()
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }
}

impl streams::HostInputStream for NonBlocking<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        drop(self.0.delete(stream)?);
        Ok(())
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}
