//! Bodies are bounded as they stream, not by what a header declares: a chunked trigger body of
//! 1 MiB (no Content-Length) is refused after 16 KiB were read, with the same 400 as a declared
//! one — it is never buffered whole; so are token (and login) and device-rename bodies. One LAN
//! address holding 300 idle sockets gets 32 of them (the rest are closed at once) and another
//! address is still served; an HTTP/2 connection is told at most 32 concurrent streams. A trigger
//! flood from one client gets 429 with `Retry-After` past its burst, while its clip is still made
//! and another client is served.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send `method path` with a chunked body of ~1 MiB (no Content-Length) and return the answer's
/// head and body as far as they came before the server closed (or said "KiB").
async fn chunked_1mib(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    // The writer goes on in its own task; the server may stop reading (and close) at any time.
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(b"5\r\n{\"a\":\r\n").await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..16 {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"2\r\n1}\r\n0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("KiB") {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let _ = writer.await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_trigger_body_is_cut_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    let answer = chunked_1mib(d.http_addr, "POST", "/api/cameras/cam0/trigger").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("trigger body larger than 16 KiB"), "{answer}");
    // The camera is still there, and took no trigger.
    let (status, info) = get_json(d.http_addr, "/api/cameras/cam0").await;
    assert_eq!((status, info["recording"].as_bool()), (200, Some(false)), "{info}");
    // The other JSON routes stream their limits the same way (chunked bodies too).
    // (/api/login reads its body through the same filter as /api/tokens; without login it
    // answers 200 whatever the body.)
    let answer = chunked_1mib(d.http_addr, "POST", "/api/tokens").await;
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("JSON body larger than 16 KiB"), "{answer}");
    let answer = chunked_1mib(d.http_addr, "PATCH", "/api/devices/phone").await;
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("device rename body larger than 4 KiB"), "{answer}");
    d.shutdown().await;
}

/// A TCP connection to `to` from the loopback address `from` (any 127.x.y.z is this machine).
async fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((from, 0).into()).unwrap();
    sock.connect(to).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    // "Another LAN host": 300 sockets from 127.0.0.2 that never send anything.
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(other, d.http_addr).await);
    }
    // All but 32 are closed by the server without waiting (EOF or reset on read).
    let deadline = std::time::Duration::from_secs(20);
    let reads = idle.into_iter().map(|mut s| async move {
        let mut b = [0u8; 1];
        match tokio::time::timeout(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => (true, s),
            _ => (false, s),
        }
    });
    // Only the closed ones resolve before the deadline; collect them as they come.
    let mut set = tokio::task::JoinSet::new();
    for r in reads {
        set.spawn(r);
    }
    let mut closed = 0;
    let mut kept = Vec::new();
    while closed < 300 - 32 {
        match tokio::time::timeout(deadline, set.join_next()).await {
            Ok(Some(Ok((true, _)))) => closed += 1,
            Ok(Some(Ok((false, s)))) => kept.push(s),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    assert_eq!(closed, 300 - 32, "connections over the per-address cap were closed at once");
    // This machine's own address is served while the other still holds its 32.
    let (status, _) = tokio::time::timeout(deadline, get_json(d.http_addr, "/api/health"))
        .await
        .expect("served while another address holds its connections");
    assert_eq!(status, 200);
    set.abort_all();
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_told_a_stream_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    let mut s = tokio::net::TcpStream::connect(d.http_addr).await.unwrap();
    // HTTP/2 with prior knowledge (h2c): the preface and an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // The server's first frame is its SETTINGS: 9-byte header, then 6-byte (id, value) pairs.
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.expect("a SETTINGS frame");
    assert_eq!(head[3], 0x4, "frame type SETTINGS");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    let settings: Vec<(u16, u32)> = body
        .chunks_exact(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) and SETTINGS_MAX_HEADER_LIST_SIZE (0x6).
    assert!(settings.contains(&(0x3, 32)), "{settings:?}");
    assert!(settings.contains(&(0x6, 64 * 1024)), "{settings:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_flood_from_one_client_is_rate_limited_and_another_client_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("1 s buffered", std::time::Duration::from_secs(60), || {
        p.stats().buffered >= std::time::Duration::from_secs(1)
    })
    .await;
    let client =
        |from: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().expect("client");
    let url = format!("http://{}/api/cameras/cam0/trigger", d.http_addr);
    // 60 triggers at once from 127.0.0.1 (default: a burst of 10, then 1 a second).
    let flooder = client([127, 0, 0, 1]);
    let (mut accepted, mut limited) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        let r = flooder.post(&url).send().await.expect("HTTP answers");
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string());
        let body: serde_json::Value = r.json().await.expect("JSON body");
        match status {
            202 => accepted.push(body["clip_id"].as_str().expect("clip_id").to_string()),
            429 => limited.push((retry, body)),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(accepted.len() >= 10, "the burst is served: {} accepted", accepted.len());
    assert!(!limited.is_empty(), "60 triggers at once from one client: some are refused");
    for (retry, body) in &limited {
        let secs: u64 = retry.as_deref().and_then(|r| r.parse().ok()).expect("Retry-After in seconds");
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("too many triggers")), "{body}");
    }
    // Another client (another LAN address) is answered normally meanwhile.
    let (status, other) = {
        let r = client([127, 0, 0, 2]).post(&url).send().await.expect("HTTP answers");
        (r.status().as_u16(), r.json::<serde_json::Value>().await.expect("JSON body"))
    };
    assert_eq!(status, 202, "{other}");
    // The flood's clip is still made (every clip an accepted trigger named).
    accepted.dedup();
    for id in &accepted {
        let clip = wait_clip(d.http_addr, id, std::time::Duration::from_secs(60)).await;
        assert_eq!(clip["id"], id.as_str());
    }
    d.shutdown().await;
}
