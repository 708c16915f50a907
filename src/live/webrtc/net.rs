//! The one UDP socket every WebRTC session shares, and the addresses announced on it.
//!
//! The socket is bound to `0.0.0.0:port` with `IP_PKTINFO`, so each datagram tells which local
//! address it was sent to (ICE matches a binding request to a host candidate by that address,
//! and must answer from it) and each reply leaves from the address str0m names — one port for
//! every interface, whatever addresses DHCP hands out later. IPv4 only.
//!
//! Must never block: reads and writes are non-blocking (`try_io`); a full send buffer drops the
//! datagram (UDP; the viewer's NACK or PLI repairs it) and counts it.

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use tokio::io::Interest;

/// A datagram read: its bytes in the caller's buffer, who sent it, and to which local address.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes read.
    pub len: usize,
    /// The sender.
    pub source: SocketAddr,
    /// Our address it was sent to (`IP_PKTINFO`), with our port.
    pub destination: SocketAddr,
}

/// The shared socket.
pub struct Udp {
    sock: tokio::net::UdpSocket,
    port: u16,
}

impl Udp {
    /// Bind `0.0.0.0:port` (0 picks a free port) with `IP_PKTINFO`; must be called inside the
    /// tokio runtime.
    pub fn bind(port: u16) -> io::Result<Udp> {
        let std = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        std.set_nonblocking(true)?;
        setsockopt(&std, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        // A keyframe leaves as a burst of datagrams; ask for room for one (the kernel caps it at
        // net.core.wmem_max).
        let _ = setsockopt(&std, sockopt::SndBuf, &(1 << 20));
        let _ = setsockopt(&std, sockopt::RcvBuf, &(1 << 18));
        let port = std.local_addr()?.port();
        Ok(Udp { sock: tokio::net::UdpSocket::from_std(std)?, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Wait until a datagram can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.sock.readable().await
    }

    /// Read one datagram into `buf` without waiting (`WouldBlock` when there is none).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let fd = self.sock.as_raw_fd();
        let port = self.port;
        self.sock.try_io(Interest::READABLE, || {
            let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                .map_err(io::Error::from)?;
            let source = msg.address.map(|a| SocketAddr::V4(a.into()));
            let mut local = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
                    local = Some(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr)));
                }
            }
            match (source, local) {
                (Some(source), Some(ip)) => {
                    Ok(Received { len: msg.bytes, source, destination: SocketAddr::V4(SocketAddrV4::new(ip, port)) })
                }
                _ => Err(io::Error::other("a datagram without its addresses")),
            }
        })
    }

    /// Send `data` to `to` from our address `from` (a host candidate's); never waits.
    pub fn try_send(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        let (SocketAddr::V4(to), IpAddr::V4(from)) = (to, from.ip()) else {
            return Err(io::Error::other("IPv4 only"));
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr { s_addr: u32::from(from).to_be() },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let fd = self.sock.as_raw_fd();
        let to = SockaddrIn::from(to);
        self.sock.try_io(Interest::WRITABLE, || {
            sendmsg(
                fd,
                &[IoSlice::new(data)],
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::MSG_DONTWAIT,
                Some(&to),
            )
            .map(|_| ())
            .map_err(io::Error::from)
        })
    }
}

/// The addresses to announce as host candidates: `configured` when given, else the IPv4
/// addresses of the interfaces that are up (loopback included, link-local left out).
pub fn host_addresses(configured: &[IpAddr]) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut out: Vec<IpAddr> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let up = a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            let Some(ip) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip()) else { continue };
            if up && usable(IpAddr::V4(ip)) && !out.contains(&IpAddr::V4(ip)) {
                out.push(IpAddr::V4(ip));
            }
        }
    }
    // LAN addresses first: the browser tries candidates in the order of their priority, and
    // a phone never reaches our loopback.
    out.sort_by_key(|ip| ip.is_loopback());
    out
}

/// Whether an address can be a host candidate (str0m refuses the rest).
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_link_local() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_are_usable_and_configured_ones_win() {
        let found = host_addresses(&[]);
        assert!(found.iter().all(|ip| usable(*ip)), "{found:?}");
        assert!(found.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{found:?}");
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9));
        assert_eq!(host_addresses(&[lan]), vec![lan]);
        assert!(!usable("169.254.1.1".parse().unwrap()) && !usable("0.0.0.0".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_datagram_says_which_local_address_it_came_to_and_the_reply_leaves_from_it() {
        let udp = Udp::bind(0).unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ours = SocketAddr::from((Ipv4Addr::LOCALHOST, udp.port()));
        peer.send_to(b"ping", ours).await.unwrap();
        udp.readable().await.unwrap();
        let mut buf = [0u8; 64];
        let r = loop {
            match udp.try_recv(&mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => udp.readable().await.unwrap(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((&buf[..r.len], r.source, r.destination), (&b"ping"[..], peer.local_addr().unwrap(), ours));
        udp.try_send(r.destination, r.source, b"pong").unwrap();
        let mut back = [0u8; 64];
        let (n, from) = peer.recv_from(&mut back).await.unwrap();
        assert_eq!((&back[..n], from), (&b"pong"[..], ours));
    }
}
