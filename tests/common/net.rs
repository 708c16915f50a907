//! Network faults for camera tests: a TCP proxy that can freeze (a camera that hangs without
//! closing its connection) and a server that answers anything with garbage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A TCP proxy on 127.0.0.1 to `upstream`. While [`frozen`](Self::freeze), it passes nothing in
/// either direction and keeps every connection open; new connections are accepted and held too.
pub struct FreezingProxy {
    /// The port clients connect to.
    pub port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    pub fn start(upstream: u16) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to, f) = (from.try_clone().unwrap(), to.try_clone().unwrap(), f.clone());
                    std::thread::spawn(move || pump(&mut from, &mut to, &f));
                }
            }
        });
        FreezingProxy { port, frozen }
    }

    /// Stop (true) or resume (false) passing bytes.
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }
}

fn pump(from: &mut TcpStream, to: &mut TcpStream, frozen: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Held while frozen: the other side sees a silent, open connection.
        while frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A server on 127.0.0.1 that answers every connection with `reply` (garbage to an RTSP client)
/// and closes it. Returns its port.
pub fn garbage_server(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the garbage server");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            let mut req = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read(&mut req);
            let _ = c.write_all(reply);
        }
    });
    port
}
