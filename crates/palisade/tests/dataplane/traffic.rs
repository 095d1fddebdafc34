//! Real traffic from inside namespaces: TCP and UDP echo servers and clients, ICMP echo over raw
//! sockets. A socket belongs to the network namespace of the thread that created it, so each
//! helper creates its socket in a thread that entered the namespace ([`Netns::enter`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::lab::Netns;

pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// A TCP server in `ns` on `addr` that echoes every line back.
pub fn tcp_echo_server(ns: &Netns, addr: SocketAddr) {
    let listener = ns.enter(move || TcpListener::bind(addr)).expect("binding the TCP echo server");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = match stream.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let reader = BufReader::new(stream);
                for line in reader.lines() {
                    let Ok(line) = line else { return };
                    if writer.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A UDP server in `ns` on `addr` that echoes every datagram back.
pub fn udp_echo_server(ns: &Netns, addr: SocketAddr) {
    let socket = ns.enter(move || UdpSocket::bind(addr)).expect("binding the UDP echo server");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
}

/// An open TCP connection from a namespace.
pub struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Sends a line and waits for its echo; false when none comes within [`TIMEOUT`].
    pub fn echo(&mut self, text: &str) -> bool {
        if self.stream.write_all(format!("{text}\n").as_bytes()).is_err() {
            return false;
        }
        let mut line = String::new();
        matches!(self.reader.read_line(&mut line), Ok(n) if n > 0 && line.trim_end() == text)
    }
}

/// Connects from `ns` (from `source` if given) to `to`, and checks one echo.
pub fn tcp_connect(ns: &Netns, source: Option<IpAddr>, to: SocketAddr) -> Option<Conn> {
    tcp_connect_bound(ns, source.map(|ip| SocketAddr::new(ip, 0)), to)
}

/// [`tcp_connect`] from a chosen source address and port.
pub fn tcp_connect_bound(ns: &Netns, source: Option<SocketAddr>, to: SocketAddr) -> Option<Conn> {
    let stream = ns
        .enter(move || -> std::io::Result<TcpStream> {
            match source {
                None => TcpStream::connect_timeout(&to, TIMEOUT),
                Some(from) => connect_from(from, to),
            }
        })
        .ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    let reader = BufReader::new(stream.try_clone().ok()?);
    let mut conn = Conn { stream, reader };
    conn.echo("hello").then_some(conn)
}

/// Whether a TCP connection from `ns` to `to` is accepted and echoes.
pub fn tcp_ok(ns: &Netns, to: SocketAddr) -> bool {
    tcp_connect(ns, None, to).is_some()
}

/// `connect` from a chosen source address, with the timeout done by a non-blocking connect.
fn connect_from(source: SocketAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const _ as *const libc::c_void, 4);
        let (addr, len) = sockaddr(source);
        if libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_nonblocking(true)?;
        let (addr, len) = sockaddr(to);
        if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err);
            }
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        if libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) != 1 {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"));
        }
        if let Some(err) = stream.take_error()? {
            return Err(err);
        }
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Whether a UDP datagram from `ns` to `to` comes back.
pub fn udp_ok(ns: &Netns, to: SocketAddr) -> bool {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let Ok(socket) = ns.enter(move || UdpSocket::bind(bind)) else { return false };
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    if socket.send_to(b"ping", to).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(socket.recv_from(&mut buf), Ok((4, _)) if &buf[..4] == b"ping")
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from_be_bytes([chunk[0], 0]) };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one ICMP (or ICMPv6) echo request from `ns` to `to`; true when the reply comes.
pub fn ping(ns: &Netns, to: IpAddr) -> bool {
    ns.enter(move || ping_here(to)).unwrap_or(false)
}

fn ping_here(to: IpAddr) -> std::io::Result<bool> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (family, protocol, request, reply) = match to {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ident = (std::process::id() as u16) ^ 0x5a5a;
    let mut packet = vec![request, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.extend_from_slice(b"palisade-ping");
    if to.is_ipv4() {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let (addr, len) = sockaddr(SocketAddr::new(to, 0));
    let sent =
        unsafe { libc::sendto(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len(), 0, &addr as *const _ as *const libc::sockaddr, len) };
    if sent < 0 {
        return Ok(false);
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 1500];
    let mut file = std::fs::File::from(fd);
    while Instant::now() < deadline {
        receive_timeout(file.as_raw_fd(), deadline);
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
        let icmp = if to.is_ipv4() {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let src = IpAddr::from([buf[12], buf[13], buf[14], buf[15]]);
            if src != to || n < ihl + 8 {
                continue;
            }
            &buf[ihl..n]
        } else {
            &buf[..n]
        };
        if icmp.len() >= 8 && icmp[0] == reply && u16::from_be_bytes([icmp[4], icmp[5]]) == ident {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One thing to try from an instance.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// A TCP connection that echoes.
    Tcp(SocketAddr),
    /// The same, from a chosen source address.
    TcpFrom(IpAddr, SocketAddr),
    /// A UDP datagram that comes back.
    Udp(SocketAddr),
    /// An ICMP or ICMPv6 echo that is answered.
    Ping(IpAddr),
}

impl Probe {
    pub fn run(self, ns: &Netns) -> bool {
        match self {
            Probe::Tcp(to) => tcp_ok(ns, to),
            Probe::TcpFrom(from, to) => tcp_connect(ns, Some(from), to).is_some(),
            Probe::Udp(to) => udp_ok(ns, to),
            Probe::Ping(to) => ping(ns, to),
        }
    }
}

/// Runs every probe at once (a refused one costs [`TIMEOUT`], so one after the other would be
/// slow) and returns a line per probe whose outcome is not the expected one.
pub fn mismatches(probes: &[(String, &Netns, Probe, bool)]) -> Vec<String> {
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes.iter().map(|(_, ns, probe, _)| scope.spawn(move || probe.run(ns))).collect();
        handles.into_iter().map(|h| h.join().expect("probe panicked")).collect()
    });
    probes
        .iter()
        .zip(outcomes)
        .filter(|((_, _, _, want), got)| want != got)
        .map(|((label, _, probe, want), got)| format!("{label} ({probe:?}): expected {}, got {}", verdict(*want), verdict(got)))
        .collect()
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "refused" }
}

/// A blocking receive on `fd` waits until `deadline` at most (and at least a millisecond).
fn receive_timeout(fd: std::os::fd::RawFd, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let tv = libc::timeval { tv_sec: left.as_secs() as libc::time_t, tv_usec: left.subsec_micros().max(1000) as libc::suseconds_t };
    // SAFETY: the option is a timeval we own, of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

pub fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or_else(|_| panic!("bad MAC {text:?}"));
    }
    mac
}

/// A packet socket of the calling thread's namespace, bound to its `eth0`, for the frames of
/// `ethertype` (`ETH_P_ALL`: all of them); `flags` are added to the socket type.
pub fn eth0_packet_socket(ethertype: u16, flags: libc::c_int) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let protocol = ethertype.to_be();
    // SAFETY: plain socket calls on a descriptor we own, with a zeroed sockaddr_ll we fill in.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags, i32::from(protocol));
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let ifindex = libc::if_nametoindex(c"eth0".as_ptr());
        assert!(ifindex > 0, "no eth0");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol;
        sll.sll_ifindex = ifindex as i32;
        let rc = libc::bind(fd.as_raw_fd(), &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    }
}

/// Sends, from `ns`'s `eth0`, an ARP request for `target` claiming to be `sender_ip` at
/// `sender_mac` (the frame's own source MAC is `frame_mac`), and returns whether an ARP reply
/// for `target` addressed to `sender_ip` comes back within [`TIMEOUT`]: whoever answers has
/// believed the claim.
pub fn arp_claim_answered(
    ns: &Netns,
    frame_mac: &str,
    sender_mac: &str,
    sender_ip: std::net::Ipv4Addr,
    target: std::net::Ipv4Addr,
) -> bool {
    let (frame_mac, sender_mac) = (parse_mac(frame_mac), parse_mac(sender_mac));
    ns.enter(move || unsafe {
        use std::os::fd::AsRawFd;
        let fd = eth0_packet_socket(0x0806, 0);
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&frame_mac);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        frame.extend_from_slice(&sender_mac);
        frame.extend_from_slice(&sender_ip.octets());
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&target.octets());
        let sent = libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0);
        assert_eq!(sent, frame.len() as isize, "sending the ARP request: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            receive_timeout(fd.as_raw_fd(), deadline);
            let n = libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 42 {
                continue;
            }
            let arp = &buf[14..n as usize];
            // A reply (operation 2) from the target, to the claimed MAC and address.
            if arp[7] == 2 && arp[14..18] == target.octets() && arp[18..24] == sender_mac && arp[24..28] == sender_ip.octets() {
                return true;
            }
        }
        false
    })
}
