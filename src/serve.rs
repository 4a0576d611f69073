//! `sciscore serve`: a small static file server for the page in `www/`, on 127.0.0.1 only.
//! Part of the `sciscore` binary (not the library).
//!
//! GET and HEAD, single-range `Range` requests (the page reads model weights tensor by tensor
//! with them), correct MIME types (`application/wasm` for streaming compilation), no path
//! traversal, a fixed pool of threads, timeouts on every socket, and `/models/demo/` mapped to
//! the bundled demo model so the page works offline.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Threads answering requests; a browser opens at most 6 connections per host.
const THREADS: usize = 8;
/// Request line plus headers; anything longer is not a browser talking to us.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// An idle or slow client is dropped after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the demo model is served from (the page's demo preset loads `models/demo/`).
pub const DEMO_PREFIX: &str = "/models/demo/";

/// The same policy as the `<meta>` in `www/index.html`, sent as a header too: a dedicated
/// worker takes its CSP from its own response, not from the page.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; \
    img-src 'self' blob: data:; style-src 'self'; worker-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What to serve.
pub struct Site {
    /// The page (`www/`).
    pub root: PathBuf,
    /// The demo model folder, served under `/models/demo/`.
    pub demo: Option<PathBuf>,
}

/// Binds 127.0.0.1:`port` (0 picks a free port) and returns the listener and its address.
pub fn bind(port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves forever with `THREADS` threads accepting on the one listener.
pub fn run(listener: TcpListener, site: Site) -> io::Result<()> {
    let site = std::sync::Arc::new(Site {
        root: site.root.canonicalize()?,
        demo: site.demo.map(|d| d.canonicalize()).transpose()?,
    });
    let mut workers = Vec::new();
    for _ in 0..THREADS {
        let listener = listener.try_clone()?;
        let site = site.clone();
        workers.push(std::thread::spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    // One bad client never takes the thread down.
                    let _ = handle(stream, &site);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

fn read_request(stream: &TcpStream) -> io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD_BYTES as u64));
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None); // headers cut off or too long
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    Ok(Some(Request {
        method: method.to_string(),
        path: target.to_string(),
        range,
    }))
}

fn handle(stream: TcpStream, site: &Site) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let Some(req) = read_request(&stream)? else {
        return send_error(&stream, 400, "Bad Request");
    };
    if req.method != "GET" && req.method != "HEAD" {
        return send_error(&stream, 405, "Method Not Allowed");
    }
    let Some(path) = resolve(site, &req.path) else {
        return send_error(&stream, 404, "Not Found");
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        return send_error(&stream, 404, "Not Found");
    };
    let size = file.metadata()?.len();
    let (status, start, len) = match req.range.as_deref().map(|r| parse_range(r, size)) {
        None | Some(Range::Ignore) => (200, 0, size),
        Some(Range::Bytes(a, b)) => (206, a, b - a),
        Some(Range::Unsatisfiable) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return (&stream).write_all(head.as_bytes());
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Cross-Origin-Resource-Policy: same-origin\r\nContent-Security-Policy: {CSP}\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        mime(&path),
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{size}\r\n",
            start + len - 1
        ));
    }
    head.push_str("\r\n");
    let mut out = io::BufWriter::new(&stream);
    out.write_all(head.as_bytes())?;
    if req.method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        io::copy(&mut (&mut file).take(len), &mut out)?;
    }
    out.flush()
}

fn send_error(mut stream: &TcpStream, status: u16, reason: &str) -> io::Result<()> {
    let body = format!("{status} {reason}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

/// A file under the site for a request target, or `None` (404) for anything outside it.
fn resolve(site: &Site, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let path = percent_decode(path)?;
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

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, PartialEq)]
enum Range {
    /// Serve the whole file (no range we handle: several ranges, another unit).
    Ignore,
    /// Bytes `a..b` (end exclusive), within the file.
    Bytes(u64, u64),
    Unsatisfiable,
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14.1.2).
fn parse_range(h: &str, size: u64) -> Range {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Ignore;
    };
    if spec.contains(',') {
        return Range::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size, n > 0)),
        (false, true) => a.parse::<u64>().ok().map(|a| (a, size, a < size)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, (b + 1).min(size), a < size)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Range::Ignore,
        Some((a, b, true)) if a < b => Range::Bytes(a, b),
        Some(_) => Range::Unsatisfiable,
    }
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

    fn fetch(addr: SocketAddr, req: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..split]).into_owned(),
            all[split + 4..].to_vec(),
        )
    }

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-0", 10), Range::Bytes(0, 1));
        assert_eq!(parse_range("bytes=2-", 10), Range::Bytes(2, 10));
        assert_eq!(parse_range("bytes=-3", 10), Range::Bytes(7, 10));
        assert_eq!(parse_range("bytes=5-100", 10), Range::Bytes(5, 10));
        assert_eq!(parse_range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), Range::Ignore);
        assert_eq!(parse_range("items=0-1", 10), Range::Ignore);
        assert_eq!(parse_range("bytes=5-2", 10), Range::Ignore);
    }

    #[test]
    fn serves_files_ranges_and_mime_types_and_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        let demo = dir.path().join("demo");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::create_dir_all(&demo).unwrap();
        std::fs::write(root.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(root.join("pkg/a.wasm"), b"\0asm0123456789").unwrap();
        std::fs::write(root.join(".secret"), "no").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "no").unwrap();
        std::fs::write(demo.join("config.json"), "{}").unwrap();
        let (listener, addr) = bind(0).unwrap();
        std::thread::spawn(move || {
            run(
                listener,
                Site {
                    root,
                    demo: Some(demo),
                },
            )
        });

        let (h, body) = fetch(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 200")
                && h.contains("text/html")
                && h.contains("Content-Security-Policy"),
            "{h}"
        );
        assert_eq!(body, b"<!doctype html>");

        let (h, body) = fetch(addr, "GET /pkg/a.wasm HTTP/1.1\r\nRange: bytes=4-7\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 206")
                && h.contains("application/wasm")
                && h.contains("Content-Range: bytes 4-7/14"),
            "{h}"
        );
        assert_eq!(body, b"0123");

        let (h, body) = fetch(addr, "HEAD /models/demo/config.json HTTP/1.1\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 200")
                && h.contains("Content-Length: 2")
                && h.contains("application/json"),
            "{h}"
        );
        assert!(body.is_empty());

        let (h, _) = fetch(addr, "GET /pkg/a.wasm HTTP/1.1\r\nRange: bytes=99-\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 416") && h.contains("bytes */14"),
            "{h}"
        );

        for bad in [
            "/../outside.txt",
            "/%2e%2e/outside.txt",
            "/pkg/..%2F..%2Foutside.txt",
            "/.secret",
            "/models/demo/../../outside.txt",
            "/nope.js",
            "/%zz",
        ] {
            let (h, _) = fetch(addr, &format!("GET {bad} HTTP/1.1\r\n\r\n"));
            assert!(h.starts_with("HTTP/1.1 404"), "{bad}: {h}");
        }
        let (h, _) = fetch(addr, "POST / HTTP/1.1\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 405"), "{h}");
        let (h, _) = fetch(addr, "garbage\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 400"), "{h}");
    }
}
