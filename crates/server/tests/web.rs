//! fabd serves the web app from the binary on its gRPC port: the page, every asset it names
//! (gzipped for a client that accepts it, identical once unzipped), the right types and cache
//! rules, 404 for anything else, and gRPC and gRPC-web still answer on the same port.

use std::io::Read;

use fabrouter_api::v1 as pb;
use fabrouter_testkit::router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection, as a browser's first load makes it.
async fn get(addr: std::net::SocketAddr, path: &str, gzip: bool) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let enc = if gzip {
        "Accept-Encoding: gzip, deflate, br\r\n"
    } else {
        ""
    };
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{enc}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn fabd_serves_the_embedded_app_beside_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 30.0, 30.0).await;
    let addr = r.addr();

    let page = get(addr, "/", false).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    // Nothing from elsewhere: every script, style and icon is a path on this server.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    let assets: Vec<String> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/assets/"))
        .map(String::from)
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
    for a in &assets {
        let plain = get(addr, a, false).await;
        assert_eq!(plain.status, 200, "{a}");
        assert!(plain.header("content-encoding").is_none());
        let want = if a.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(plain.header("content-type"), Some(want), "{a}");
        assert!(plain.header("cache-control").unwrap().contains("immutable"));
        let zipped = get(addr, a, true).await;
        assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{a}");
        assert!(zipped.body.len() < plain.body.len(), "{a}");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(
            unzipped, plain.body,
            "{a}: the gzipped copy is the same file"
        );
    }
    assert_eq!(get(addr, "/favicon.svg", false).await.status, 200);
    assert_eq!(get(addr, "/assets/nope.js", false).await.status, 404);
    assert_eq!(get(addr, "/assets/../Cargo.toml", false).await.status, 404);

    // gRPC on the same port, as before.
    let who = r
        .admin()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.role, pb::Role::Admin as i32);
    r.stop().await;
}
