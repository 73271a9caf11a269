//! Responses whose body is written while it is sent: the AI endpoints relay a model's tokens
//! as they arrive instead of after the last one.
//!
//! A [`Response`] stays `http::Response<Vec<u8>>`, so the 50-odd handlers that answer small
//! JSON are unchanged. A streamed response has an empty buffered body and carries its body as
//! a [`BodyStream`] extension; each runtime's entry takes it out ([`take`]) and sends it: a
//! `ReadableStream` on Workers, a `StreamBody` on hyper and wasi:http. A caller that needs the
//! whole body (a test, a buffering proxy) uses [`buffer`].
//!
//! The key decision: `http` extensions must be `Send + Sync + Clone`, and a body's producer (a
//! run holding the `Rc`-based context) is not `Send`. `send_wrapper` makes the stream movable
//! and checks at run time that it is only touched on the thread that made it. That always
//! holds here: wasm is single-threaded, and the native host serves each connection on the
//! current-thread runtime that ran its handler.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use send_wrapper::SendWrapper;

use super::Response;

/// A body as it is produced, chunk by chunk.
pub type Chunks = Pin<Box<dyn Stream<Item = Vec<u8>>>>;

/// The streamed body of a [`Response`], as one of its extensions.
#[derive(Clone)]
pub struct BodyStream(Arc<Mutex<Option<SendWrapper<Chunks>>>>);

/// A response with `head`'s status and headers whose body is `chunks`, sent as they come.
pub fn streamed(head: http::response::Builder, chunks: impl Stream<Item = Vec<u8>> + 'static) -> Response {
    let body = BodyStream(Arc::new(Mutex::new(Some(SendWrapper::new(chunks.boxed_local())))));
    head.extension(body).body(Vec::new()).expect("a valid response head")
}

/// Where a body's producer writes its chunks ([`written_by`]).
pub struct Writer(futures_channel::mpsc::UnboundedSender<Vec<u8>>);

impl Writer {
    /// Sends `chunk` as soon as the reader asks. A reader that went away drops it: the work
    /// goes on unread (what it writes to the store is still written).
    pub fn write(&self, chunk: impl Into<Vec<u8>>) {
        let _ = self.0.unbounded_send(chunk.into());
    }
}

/// A body written by `work` as it runs, ending when it does. Reading the body is what drives
/// `work` (no task is spawned, so it runs on every runtime, a component's included).
pub fn written_by<F>(work: impl FnOnce(Writer) -> F) -> Chunks
where
    F: std::future::Future<Output = ()> + 'static,
{
    use futures_util::FutureExt;
    let (sender, receiver) = futures_channel::mpsc::unbounded();
    let work = work(Writer(sender));
    // `work` yields nothing itself; polling it alongside the channel is what moves it on, and
    // its end drops the writer, which ends the channel.
    futures_util::stream::select(receiver.map(Some), work.into_stream().map(|()| None))
        .filter_map(std::future::ready)
        .boxed_local()
}

/// The streamed body of `response`, taken out of it (`None` when its body is buffered).
pub fn take(response: &mut Response) -> Option<Chunks> {
    let stream = response.extensions_mut().remove::<BodyStream>()?;
    let taken = stream.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    taken.map(SendWrapper::take)
}

/// `response` with its whole body buffered (a streamed one is read to its end).
pub async fn buffer(mut response: Response) -> Response {
    if let Some(mut chunks) = take(&mut response) {
        let body = response.body_mut();
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk);
        }
    }
    response
}

/// A hyper / wasi:http body: buffered, or streamed as its chunks come.
#[cfg(any(feature = "native", feature = "spin-component"))]
pub type HttpBody = http_body_util::Either<
    http_body_util::Full<bytes::Bytes>,
    http_body_util::StreamBody<
        Pin<Box<dyn Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>>>,
    >,
>;

/// `response` as an `http_body` response (the native host's hyper, the components' wasi:http).
#[cfg(any(feature = "native", feature = "spin-component"))]
pub fn into_http_body(mut response: Response) -> http::Response<HttpBody> {
    use http_body_util::{Either, Full, StreamBody};
    match take(&mut response) {
        None => response.map(|body| Either::Left(Full::new(bytes::Bytes::from(body)))),
        Some(chunks) => {
            let frames = chunks.map(|chunk| Ok(http_body::Frame::data(bytes::Bytes::from(chunk))));
            response.map(|_| Either::Right(StreamBody::new(frames.boxed_local())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(f).expect("ready")
    }

    #[test]
    fn a_streamed_body_is_taken_once_and_buffers_in_order() {
        let chunks = futures_util::stream::iter([b"a".to_vec(), b"bc".to_vec()]);
        let response = streamed(http::Response::builder().status(201).header("x-kind", "stream"), chunks);
        assert!(response.body().is_empty());
        let mut copy = response.clone();
        let buffered = block_on(buffer(response));
        assert_eq!((buffered.status().as_u16(), buffered.body().as_slice()), (201, b"abc".as_slice()));
        // The clone shares the one stream, already consumed.
        assert!(take(&mut copy).is_none());
    }

    #[test]
    fn a_written_body_carries_what_its_work_writes_in_order() {
        let chunks = written_by(|writer| async move {
            writer.write("one ");
            std::future::ready(()).await;
            writer.write("two");
        });
        let response = streamed(http::Response::builder(), chunks);
        assert_eq!(block_on(buffer(response)).body(), b"one two");
    }

    #[test]
    fn a_buffered_response_is_left_as_it_is() {
        let response = crate::http::text(200, "whole");
        assert_eq!(block_on(buffer(response)).body(), b"whole");
    }
}
