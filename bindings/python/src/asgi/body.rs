//! The response body hyper writes: one chunk (the usual response), or the chunks the app
//! sends as it goes (`more_body`), with back-pressure: the app's `send` waits while more
//! than [`RESPONSE_HIGH_WATER`] bytes are queued, until the client has taken them.
//! [`Exchange::begin`] hands hyper the response with such a body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use bytes::Bytes;
use http_body::{Body, Frame};

use super::exchange::{Exchange, Head, State, Wakes, RESPONSE_HIGH_WATER};

/// The app failed mid-response: hyper aborts the connection.
#[derive(Debug, thiserror::Error)]
#[error("the ASGI application failed before completing its response")]
pub(crate) struct Aborted;

/// A hosted app's response body.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// The whole body, sent with the first body message.
    Once(Option<Bytes>),
    /// Chunks queued in the exchange.
    Streamed {
        exchange: Arc<Exchange>,
        /// The app failed and hyper has been given one chance to flush what it was handed
        /// before: the next poll aborts.
        abort_ready: bool,
    },
}

impl ResponseBody {
    /// A body of one chunk.
    pub(crate) fn once(chunk: Bytes) -> Self {
        Self::Once(Some(chunk))
    }

    /// A body fed by the app's later `send`s.
    pub(crate) fn streamed(exchange: Arc<Exchange>) -> Self {
        Self::Streamed {
            exchange,
            abort_ready: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.get_mut() {
            Self::Once(chunk) => Poll::Ready(chunk.take().map(|c| Ok(Frame::data(c)))),
            Self::Streamed {
                exchange,
                abort_ready,
            } => {
                let (polled, wakes) = {
                    let mut state = exchange.lock();
                    if let Some(chunk) = state.out.pop_front() {
                        state.out_bytes -= chunk.len();
                        let wakes = if state.out_bytes < RESPONSE_HIGH_WATER {
                            Wakes::sender(state.sender.take())
                        } else {
                            Wakes::default()
                        };
                        (Poll::Ready(Some(Ok(Frame::data(chunk)))), wakes)
                    } else if state.out_failed && *abort_ready {
                        (Poll::Ready(Some(Err(Aborted))), Wakes::default())
                    } else if state.out_failed {
                        // hyper drops its unflushed write buffer when a body errors: the
                        // head and chunks it took in this same round would never reach the
                        // client, who would then see a connection closed before any
                        // response (and may retry the request on a fresh connection). One
                        // Pending lets hyper flush them first (it flushes after each write
                        // round); the wake brings it straight back for the abort.
                        *abort_ready = true;
                        cx.waker().wake_by_ref();
                        (Poll::Pending, Wakes::default())
                    } else if state.out_ended {
                        (Poll::Ready(None), Wakes::default())
                    } else {
                        state.body_waker = Some(cx.waker().clone());
                        (Poll::Pending, Wakes::default())
                    }
                };
                exchange.wake(wakes);
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Once(None))
    }
}

impl Drop for ResponseBody {
    /// hyper let go of the body before its end: the client went away.
    fn drop(&mut self) {
        if let Self::Streamed { exchange, .. } = self {
            let finished = {
                let state = exchange.lock();
                state.out_ended && state.out.is_empty()
            };
            if !finished {
                exchange.client_gone();
            }
        }
    }
}

/// Starting the response lives beside the body it builds, so that the exchange does not
/// import this module back.
impl Exchange {
    /// Hands hyper the response: `head`, then `first` and (when `more`) what follows.
    pub(crate) fn begin(self: &Arc<Self>, state: &mut State, head: Head, first: Bytes, more: bool) {
        state.started = true;
        let Some(responder) = state.responder.take() else {
            return; // abandoned (timed out): nobody listens
        };
        let body = if more {
            state.out_bytes += first.len();
            if !first.is_empty() {
                state.out.push_back(first);
            }
            ResponseBody::streamed(Arc::clone(self))
        } else {
            state.out_ended = true;
            ResponseBody::once(first)
        };
        let mut response = Response::new(axum::body::Body::new(body));
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        let _ = responder.send(response);
    }
}
