//! `sciscore serve`: a small static file server for the page in `www/`, on 127.0.0.1 only.
//! Part of the `sciscore` binary (not the library).
//!
//! HTTP/1.1 by [hyper](https://docs.rs/hyper/1) on a tokio runtime, files (byte ranges,
//! conditional requests, HEAD) by tower-http's
//! [`ServeFile`](https://docs.rs/tower-http/0.6/tower_http/services/struct.ServeFile.html).
//! This module decides what may be served: only the names `127.0.0.1` and `localhost` as the
//! host (DNS rebinding), GET and HEAD, plain paths under the site (no `..`, no hidden files, no
//! symbolic link leading out), `/models/demo/` mapped to the demo model so the page works
//! offline, and our MIME types and security headers on every answer.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use socket2::{Domain, Socket, Type};
use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower_http::services::fs::ServeFileSystemResponseBody;
use tower_http::services::ServeFile;
use tower_service::Service;

/// A client has this long to send a request's head (idle keep-alive included), so slow or
/// silent sockets are closed instead of held.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line plus headers (hyper's read buffer); anything longer is not a browser talking to us.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// Connections the kernel queues before we accept them; std's 128 drops part of a burst of
/// a few hundred, whose clients then retry a second later.
const BACKLOG: i32 = 1024;
/// Where the demo model is served from (the page's demo preset loads `models/demo/`).
pub const DEMO_PREFIX: &str = "/models/demo/";

/// The same policy as the `<meta>` in `www/index.html`, sent as a header too: a dedicated
/// worker takes its CSP from its own response, not from the page.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; \
    img-src 'self' blob: data:; style-src 'self'; worker-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What to serve: canonical folders, checked before anything is announced.
pub struct Site {
    /// The page (`www/`).
    root: PathBuf,
    /// The demo model folder, served under `/models/demo/`.
    demo: Option<PathBuf>,
}

impl Site {
    /// Checks that both folders exist; an error names the path and the option it came from.
    pub fn new(root: &Path, demo: Option<&Path>) -> anyhow::Result<Site> {
        fn folder(option: &str, p: &Path) -> anyhow::Result<PathBuf> {
            let real = p
                .canonicalize()
                .with_context(|| format!("{option} {}: cannot open", p.display()))?;
            anyhow::ensure!(real.is_dir(), "{option} {}: not a folder", p.display());
            Ok(real)
        }
        Ok(Site {
            root: folder("--root", root)?,
            demo: demo.map(|d| folder("--demo", d)).transpose()?,
        })
    }
}

/// Binds 127.0.0.1:`port` (0 picks a free port) and returns the listener and its address.
pub fn bind(port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // As std does: a restarted server may bind while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener = TcpListener::from(socket);
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves forever: one tokio task per connection, so a slow, idle or failing client holds
/// nothing but its own socket.
pub fn run(listener: TcpListener, site: Site) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(accept_loop(listener, Arc::new(site)))
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait for connections to close, do not spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = site.clone();
        let service = service_fn(move |req| respond(site.clone(), req));
        let conn = http.serve_connection(TokioIo::new(stream), service);
        // A connection that fails, times out or panics ends its own task only.
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

type Body = Either<ServeFileSystemResponseBody, Full<Bytes>>;

async fn respond(
    site: Arc<Site>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if !host_allowed(&req) {
        return Ok(plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to 127.0.0.1 and localhost",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only");
        let allow = HeaderValue::from_static("GET, HEAD");
        resp.headers_mut().insert(header::ALLOW, allow);
        return Ok(resp);
    }
    let target = req.uri().path().to_owned();
    // Path checks touch the file system; keep them off the threads that drive connections.
    let file = tokio::task::spawn_blocking(move || resolve(&site, &target))
        .await
        .ok()
        .flatten();
    let Some(file) = file else {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    };
    ignore_ranges_we_do_not_serve(req.headers_mut());
    let mut serve = ServeFile::new(&file);
    // ServeFile is always ready and never fails (its errors are responses); asking keeps to
    // the Service contract.
    let Ok(()) = poll_fn(|cx| Service::<Request<Incoming>>::poll_ready(&mut serve, cx)).await;
    let Ok(resp) = serve.call(req).await;
    let mut resp = resp.map(Either::Left);
    let mime = HeaderValue::from_static(mime(&file));
    resp.headers_mut().insert(header::CONTENT_TYPE, mime);
    add_security_headers(resp.headers_mut());
    Ok(resp)
}

/// Only names that mean this machine: a page whose own name resolves to 127.0.0.1 (DNS
/// rebinding) must not read what is served here. Any port, for SSH tunnels.
fn host_allowed<B>(req: &Request<B>) -> bool {
    // An absolute-form target's authority overrides Host (RFC 9112 §3.2.2).
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost")
}

/// tower-http answers 416 to several ranges or to another unit, where RFC 9110 §14.2 lets a
/// server ignore the header and send the whole file, which is what clients expect.
fn ignore_ranges_we_do_not_serve(headers: &mut HeaderMap) {
    let single = headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .is_some_and(|r| r.starts_with("bytes=") && !r.contains(','));
    if !single {
        headers.remove(header::RANGE);
    }
}

fn plain(status: StatusCode, why: &str) -> Response<Body> {
    let body = format!("{status}: {why}\n");
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    let text = HeaderValue::from_static("text/plain; charset=utf-8");
    resp.headers_mut().insert(header::CONTENT_TYPE, text);
    add_security_headers(resp.headers_mut());
    resp
}

fn add_security_headers(h: &mut HeaderMap) {
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        // Cross-origin isolation: SharedArrayBuffer, so the page's CPU path runs on every core
        // (www/pkg-threads/). Other origins stay reachable through CORS (models on the Hub).
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-embedder-policy"),
            "require-corp",
        ),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// A file under the site for a request path, or `None` (404) for anything outside it.
fn resolve(site: &Site, target: &str) -> Option<PathBuf> {
    let path = percent_decode_str(target).decode_utf8().ok()?;
    if !path.starts_with('/') {
        return None;
    }
    let (base, rest) = match (&site.demo, path.strip_prefix(DEMO_PREFIX)) {
        (Some(demo), Some(rest)) => (demo.as_path(), rest),
        _ => (site.root.as_path(), &path[1..]),
    };
    // Only plain names: no `..`, no absolute parts, no hidden files, no backslashes or NULs.
    let mut rel = PathBuf::new();
    for part in rest.split('/').filter(|s| !s.is_empty()) {
        if part.starts_with('.') || part.contains(['\\', '\0', ':']) {
            return None;
        }
        match Path::new(part).components().next() {
            Some(Component::Normal(_)) => rel.push(part),
            _ => return None,
        }
    }
    let mut full = base.join(&rel);
    if full.is_dir() {
        full.push("index.html");
    }
    // Symbolic links must not lead out of the site either.
    let real = full.canonicalize().ok()?;
    (real.starts_with(base) && real.is_file()).then_some(real)
}

fn mime(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(target);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_local_host_names_are_served() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LocalHost:1",
            "localhost:",
        ] {
            assert!(host_allowed(&request("/", Some(ok))), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "127.0.0.2",
            "[::1]:8080",
            "localhost:80x",
            "",
        ] {
            assert!(!host_allowed(&request("/", Some(bad))), "{bad}");
        }
        assert!(!host_allowed(&request("/", None)));
        // The absolute form's authority is the host, whatever the Host header says.
        assert!(!host_allowed(&request(
            "http://evil.example/",
            Some("127.0.0.1")
        )));
        assert!(host_allowed(&request(
            "http://localhost:9/x",
            Some("evil.example")
        )));
    }
}
