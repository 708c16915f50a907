//! Bodies are bounded as they stream, not by what a header declares: a chunked trigger body of
//! 1 MiB (no Content-Length) is refused after 16 KiB were read, with the same 400 as a declared
//! one — it is never buffered whole.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_trigger_body_is_cut_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    let sock = tokio::net::TcpStream::connect(d.http_addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    // The writer goes on in its own task; the server may stop reading (and close) at any time.
    let writer = tokio::spawn(async move {
        let head = "POST /api/cameras/cam0/trigger HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
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
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("trigger body larger than 16 KiB"), "{answer}");
    let _ = writer.await;
    // The camera is still there, and took no trigger.
    let (status, info) = get_json(d.http_addr, "/api/cameras/cam0").await;
    assert_eq!((status, info["recording"].as_bool()), (200, Some(false)), "{info}");
    d.shutdown().await;
}
