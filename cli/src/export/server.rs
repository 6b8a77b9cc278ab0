//! The HTTP side of `poolside export`. hyper parses the requests; this file sets the limits
//! that keep slow or hostile clients from blinding the monitoring:
//! - connections are served concurrently, as tasks on a one-thread tokio runtime;
//! - a request head must arrive whole within [`HEAD_TIMEOUT`] (hyper closes the connection
//!   otherwise) and be at most [`MAX_HEAD`] bytes (hyper answers 431);
//! - a connection lives at most [`CONNECTION_DEADLINE`] in all, reading, scanning and
//!   writing, which also bounds a client that never reads its answer;
//! - at most [`MAX_CONNECTIONS`] are held. One more closes the oldest, so that idle
//!   connections cannot lock a scraper out until they time out.
//!
//! One request per connection (`Connection: close`), as a scraper every few seconds needs.
//! The scan runs on the runtime's thread: it takes milliseconds, and running it inline keeps
//! the work a flood of requests can queue bounded by the connection cap.

use super::respond;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

/// Connections held at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time from a connection's first read to the end of its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's whole life.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Longest request head (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8192;

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Warnings already printed, shared by the connections.
type Warned = Arc<Mutex<HashSet<String>>>;

/// Serves forever on `listener`, reading stats files from `dir`. Each scan warning is
/// printed once on stderr.
pub fn serve(listener: std::net::TcpListener, dir: &Path) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir: Arc<Path> = Arc::from(dir);
    runtime.block_on(accept_loop(listener, dir))
}

async fn accept_loop(listener: std::net::TcpListener, dir: Arc<Path>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let warned: Warned = Arc::default();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The connections' tasks, oldest first; finished ones are pruned at each accept.
    let mut open = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: say so and back off rather than spin.
                eprintln!("poolside export: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = take_slot(&slots, &mut open).await;
        let task = tokio::spawn(connection(stream, slot, dir.clone(), warned.clone()));
        open.push_back(task.abort_handle());
    }
}

/// A connection slot. When all are held, closes the oldest connection to free one.
async fn take_slot(
    slots: &Arc<Semaphore>,
    open: &mut VecDeque<AbortHandle>,
) -> OwnedSemaphorePermit {
    open.retain(|task| !task.is_finished());
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return slot;
    }
    // Every task left in `open` is unfinished and holds a slot (a task drops its slot
    // before it counts as finished), so aborting one frees a slot once the runtime drops it.
    if let Some(oldest) = open.pop_front() {
        oldest.abort();
    }
    slots
        .clone()
        .acquire_owned()
        .await
        .expect("the slot semaphore is never closed")
}

/// Serves one connection, holding `_slot` until it ends.
async fn connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    dir: Arc<Path>,
    warned: Warned,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let (status, body) = respond::answer(req.method(), req.uri().path(), &dir, &warned);
        let response = text_response(status, body);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // Errors here are the client's (a bad request, a timeout, a reset): hyper has answered
    // what can be answered, and a line per error would let a client flood stderr.
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
}

fn text_response(status: StatusCode, body: String) -> Response<http_body_util::Full<Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    response
}
