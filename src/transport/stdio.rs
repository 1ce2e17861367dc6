//! The stdio transport: newline-delimited JSON-RPC on a byte stream (stdin
//! and stdout in the binary, an in-memory pipe in tests). One task reads
//! lines (bounded: an oversized line is skipped, never buffered whole),
//! parses each once ([`jsonrpc::classify`]) and hands it to the core; one
//! task writes the core's typed messages, serialized once, coalescing what
//! is queued into one write. The server exits cleanly when the input ends.

use crate::app::App;
use crate::jsonrpc::{self, code, Incoming, RpcError};
use crate::mcp::{Outgoing, Request, Server, Sink};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Messages queued for the writer; notifications beyond it are dropped
/// (answers wait for room).
const QUEUE: usize = 1024;

/// Serves MCP on `reader`/`writer` until the input ends or `shutdown` fires.
/// Broker sessions are left to the caller (`App::shutdown`).
pub async fn run<R, W>(
    reader: R,
    writer: W,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, out_rx) = Sink::channel(QUEUE);
    let writer_task = tokio::spawn(write_lines(writer, out_rx));
    let server = Server::new(app.clone(), out.clone());
    let mut lines = LineReader::new(
        BufReader::with_capacity(64 * 1024, reader),
        app.config.max_line_bytes,
    );
    tokio::pin!(shutdown);
    loop {
        // Cancellation safety: `next_line` is not cancel safe, but when the
        // shutdown branch wins we stop reading for good, so nothing is lost
        // that would have been processed.
        let line = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            l = lines.next_line() => l,
        };
        let bytes = match line {
            Ok(Some(Line::Complete(b))) => b,
            Ok(Some(Line::TooLong { discarded })) => {
                let e = RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: the line of {discarded} bytes exceeds the limit of {} bytes (--max-line-bytes); it was discarded", app.config.max_line_bytes));
                out.send(Outgoing::error(None, e)).await;
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("reading input failed: {e}");
                break;
            }
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match jsonrpc::classify(&bytes) {
            Incoming::Invalid { id, error } => out.send(Outgoing::error(id, error)).await,
            Incoming::Response => {}
            Incoming::Notification { method, params } => server.notification(&method, params),
            Incoming::Request { id, method, params } => {
                let request = Request {
                    id,
                    method,
                    params,
                    reply: out.clone(),
                    cancel: None,
                };
                server.request(request).await;
            }
        }
    }
    // Input ended: listen streams are closed with `notifications/cancelled`,
    // in-flight calls get a short grace, then everything is cancelled.
    server.shutdown().await;
    drop(server);
    drop(out);
    writer_task.await.map_err(std::io::Error::other)?
}

/// Writes the core's messages, one line each, until every sender is gone.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Outgoing>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    while let Some(message) = rx.recv().await {
        buf.clear();
        // After a large answer give the memory back instead of keeping it for good.
        if buf.capacity() > 1 << 20 {
            buf.shrink_to(1 << 16);
        }
        message.write_json(&mut buf);
        drop(message);
        buf.push(b'\n');
        // Coalesce whatever is already queued into one write.
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(m) => {
                    m.write_json(&mut buf);
                    buf.push(b'\n');
                }
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            w.write_all(&buf).await?;
            w.flush().await
        }
        .await
        {
            // The client went away; keep draining so senders never block.
            tracing::debug!("output closed: {e}");
            while rx.recv().await.is_some() {}
            return Ok(());
        }
    }
    let _ = w.shutdown().await;
    Ok(())
}

/// What the line reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without `\n` (and without a trailing `\r`).
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded as they arrived.
    TooLong {
        /// How many bytes were discarded.
        discarded: usize,
    },
}

/// Reads newline-delimited messages with a hard cap: an oversized line is
/// skipped chunk by chunk and never buffered whole.
pub struct LineReader<R> {
    /// The byte source (stdin in production, a duplex pipe in tests).
    inner: R,
    /// Maximum bytes of one line, excluding the newline.
    limit: usize,
    /// The partial line gathered so far.
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader that rejects lines longer than `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at end of input. A final line without newline
    /// counts as a line.
    ///
    /// Cancellation safety: not cancel safe (a partially read line would be
    /// lost), so the server polls it from a single dedicated task only.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let mut discarding: Option<usize> = None;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if let Some(discarded) = discarding {
                    return Ok(Some(Line::TooLong { discarded }));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Complete(finish(std::mem::take(&mut self.buf)))));
            }
            let (part, found) = match memchr(chunk) {
                Some(i) => (&chunk[..i], Some(i)),
                None => (chunk, None),
            };
            match &mut discarding {
                Some(n) => *n += part.len(),
                None => {
                    if self.buf.len() + part.len() > self.limit + 1 {
                        discarding = Some(self.buf.len() + part.len());
                        self.buf = Vec::new();
                    } else {
                        self.buf.extend_from_slice(part);
                    }
                }
            }
            let used = found.map(|i| i + 1).unwrap_or(chunk.len());
            self.inner.consume(used);
            if found.is_some() {
                if let Some(discarded) = discarding {
                    return Ok(Some(Line::TooLong { discarded }));
                }
                let line = finish(std::mem::take(&mut self.buf));
                if line.len() > self.limit {
                    return Ok(Some(Line::TooLong {
                        discarded: line.len(),
                    }));
                }
                return Ok(Some(Line::Complete(line)));
            }
        }
    }
}

fn finish(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        let reader = tokio::io::BufReader::with_capacity(7, input);
        let mut r = LineReader::new(reader, limit);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_and_caps_lines() {
        let got = lines(b"abc\r\n0123456789abcdef\nxy\nlast", 10).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"abc".to_vec()),
                Line::TooLong { discarded: 16 },
                Line::Complete(b"xy".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn exact_limit_is_accepted() {
        let got = lines(b"0123456789\n01234567890\n", 10).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"0123456789".to_vec()),
                Line::TooLong { discarded: 11 }
            ]
        );
    }

    use proptest::prelude::*;

    proptest! {
        // The fuzz target of the framing layer: run longer with
        // PROPTEST_CASES=1000000 cargo test --release --lib transport::stdio
        #[test]
        fn line_reader_splits_exactly_and_never_buffers_past_the_limit(
            lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40), 0..20),
            limit in 1usize..32,
            cap in 1usize..16,
        ) {
            let mut input = Vec::new();
            for l in &lines {
                input.extend_from_slice(l);
                input.push(b'\n');
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(async {
                let mut r = LineReader::new(tokio::io::BufReader::with_capacity(cap, input.as_slice()), limit);
                let mut out = Vec::new();
                while let Some(l) = r.next_line().await.unwrap() {
                    prop_assert!(r.buf.capacity() <= limit + cap + 64, "buffer grew to {}", r.buf.capacity());
                    out.push(l);
                }
                Ok(out)
            })?;
            prop_assert_eq!(got.len(), lines.len());
            for (l, g) in lines.iter().zip(got) {
                let mut want = l.clone();
                if want.last() == Some(&b'\r') {
                    want.pop();
                }
                match g {
                    Line::Complete(b) => prop_assert_eq!(b, want),
                    Line::TooLong { discarded } => prop_assert!(discarded > limit && discarded >= want.len()),
                }
            }
        }
    }
}
