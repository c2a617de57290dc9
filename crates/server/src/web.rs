//! Serves the web app (`web/`, built into `web/dist/` and committed) on fabd's own port, beside
//! gRPC and gRPC-web, from bytes compiled into the binary: a fresh clone with only a Rust
//! toolchain serves the page, and nothing is read from disk or fetched from elsewhere at run time.
//!
//! Every asset is embedded twice, as built and gzipped (`*.gz`, written by the build): a browser
//! that accepts gzip gets the smaller copy, anything else the plain one. Asset names carry a
//! content hash, so they are cached for a year; `index.html` is never cached.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use include_dir::{Dir, include_dir};

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/dist");

/// Adds the app's routes to the gRPC router. gRPC paths (`/package.Service/Method`) are routed
/// before these; anything else that is not an asset gets the app's page or 404.
pub fn routes(router: axum::Router) -> axum::Router {
    router
        .route("/", axum::routing::get(page))
        .route("/index.html", axum::routing::get(page))
        .route("/assets/{*path}", axum::routing::get(asset))
        .route("/favicon.svg", axum::routing::get(asset))
}

async fn page(req: Request<Body>) -> Response<Body> {
    serve("index.html", req.method(), req.headers())
}

async fn asset(req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    serve(&path, req.method(), req.headers())
}

/// The embedded file at `path`, gzipped when the client accepts it.
fn serve(path: &str, method: &Method, headers: &HeaderMap) -> Response<Body> {
    let Some(file) = DIST.get_file(path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let gzip_ok = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let gz = gzip_ok
        .then(|| DIST.get_file(format!("{path}.gz")))
        .flatten();
    let bytes = gz.map_or(file.contents(), |g| g.contents());
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, content_type(path))
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(header::VARY, "accept-encoding")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CACHE_CONTROL,
            if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            },
        );
    if gz.is_some() {
        resp = resp.header(header::CONTENT_ENCODING, "gzip");
    }
    if path == "index.html" {
        // The page loads only its own scripts and styles and talks only to this server.
        resp = resp.header(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                 connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    resp.body(body)
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad response\n"))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Whether the embedded build has the app's page (a build of the sources always does).
pub fn has_app() -> bool {
    DIST.get_file("index.html").is_some()
}
