//! Flow logs: the packets the tables log (`log group N`, see [`crate::nft`]) read over netlink,
//! aggregated per flow per minute, and held for the API as [`FlowRecord`]s.
//!
//! - [`NflogSocket`]: a raw `NETLINK_NETFILTER` socket bound to one NFLOG group in copy-packet
//!   mode (only the first [`FlowLogLimits::snaplen`](crate::nft::FlowLogLimits) bytes: headers),
//!   with a bounded receive buffer. A burst the buffer cannot hold is lost in the kernel
//!   (`ENOBUFS`, counted), never queued without bound.
//! - [`parse_messages`]: NFLOG packet messages → [`LoggedPacket`] (the prefix names port,
//!   direction, action and rule; the payload's IPv4/IPv6 and TCP/UDP/SCTP/DCCP/ICMP headers the
//!   flow).
//! - [`FlowAggregator`]: one entry per flow per minute, at most `max_flows`; packets of a flow
//!   beyond that are dropped and counted in [`FlowLogReport::dropped_flows`].
//!
//! Whatever the flood, the cost is bounded: the per-port token bucket in the table bounds the
//! packets logged, the socket buffer what waits in the kernel, the aggregator what waits here.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use palisade_core::observe::{FlowAction, FlowLogReport, FlowRecord};
use palisade_core::rule::Direction;
use uuid::Uuid;

// nfnetlink / nfnetlink_log constants (linux/netfilter/nfnetlink.h, nfnetlink_log.h).
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// The kernel's receive buffer for the log socket: what a burst can queue before the kernel
/// drops (and the reader counts) the rest.
pub const SOCKET_BUFFER: usize = 1 << 20;

/// A socket reading one NFLOG group of the network namespace it was opened in.
pub struct NflogSocket {
    fd: OwnedFd,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

fn push_attr(message: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(payload);
    message.resize(message.len().next_multiple_of(4), 0);
}

impl NflogSocket {
    /// Binds `group` in copy-packet mode, `copy_range` bytes of each packet. Needs
    /// `CAP_NET_ADMIN`; fails if another process holds the group.
    pub fn open(group: u16, copy_range: u32) -> io::Result<NflogSocket> {
        // SAFETY: plain socket calls on a descriptor this function owns.
        let fd = unsafe {
            let raw = check(libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER))?;
            OwnedFd::from_raw_fd(raw)
        };
        let socket = NflogSocket { fd };
        // SAFETY: a zeroed sockaddr_nl is valid (pid 0: the kernel assigns one).
        unsafe {
            let mut address: libc::sockaddr_nl = std::mem::zeroed();
            address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            check(libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ))?;
        }
        socket.set_option(libc::SO_RCVBUF, SOCKET_BUFFER as libc::c_int)?;
        socket.configure(group, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])?;
        let mut mode = copy_range.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        socket.configure(group, NFULA_CFG_MODE, &mode)?;
        // Batch up to 64 packets or 100 ms per message, in at most 64 KiB.
        socket.configure(group, NFULA_CFG_QTHRESH, &64u32.to_be_bytes())?;
        socket.configure(group, NFULA_CFG_TIMEOUT, &10u32.to_be_bytes())?;
        socket.configure(group, NFULA_CFG_NLBUFSIZ, &65536u32.to_be_bytes())?;
        Ok(socket)
    }

    fn set_option<T>(&self, option: libc::c_int, value: T) -> io::Result<()> {
        // SAFETY: `value` lives across the call and its size is passed.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// `recv` gives up after `timeout` with `WouldBlock`/`TimedOut`, so a reading thread can
    /// notice it should stop.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        let value = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: timeout.subsec_micros() as libc::suseconds_t };
        self.set_option(libc::SO_RCVTIMEO, value)
    }

    /// One configuration message, acknowledged.
    fn configure(&self, group: u16, attribute: u16, payload: &[u8]) -> io::Result<()> {
        let mut message = vec![0u8; NLMSG_HDRLEN];
        message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
        message.extend_from_slice(&group.to_be_bytes());
        push_attr(&mut message, attribute, payload);
        let len = message.len() as u32;
        message[0..4].copy_from_slice(&len.to_ne_bytes());
        message[4..6].copy_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
        message[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        // SAFETY: the buffer is valid for its length.
        check(unsafe { libc::send(self.fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) as libc::c_int })?;
        let mut answer = [0u8; 1024];
        let n = self.recv(&mut answer)?;
        if n >= NLMSG_HDRLEN + 4 && u16::from_ne_bytes([answer[4], answer[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes(answer[16..20].try_into().expect("4 bytes"));
            if code != 0 {
                return Err(io::Error::from_raw_os_error(-code));
            }
        }
        Ok(())
    }

    /// Receives one datagram (one or more netlink messages).
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// One logged packet, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    pub port: Uuid,
    pub direction: Direction,
    pub action: FlowAction,
    pub rule: Option<Uuid>,
    pub flow: FlowTuple,
    /// The packet's length on the wire (IP header included), whatever was copied of it.
    pub bytes: u64,
}

/// The addresses, protocol and ports (or ICMP type and code) of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp: Option<(u8, u8)>,
}

/// What a prefix written by [`crate::nft::log_prefix`] says: (action, direction, port, rule).
pub fn parse_prefix(prefix: &str) -> Option<(FlowAction, Direction, Uuid, Option<Uuid>)> {
    let mut words = prefix.split(' ');
    if words.next()? != "pal" {
        return None;
    }
    let action = match words.next()? {
        "a" => FlowAction::Accept,
        "d" => FlowAction::Reject,
        _ => return None,
    };
    let direction = match words.next()? {
        "i" => Direction::Ingress,
        "e" => Direction::Egress,
        _ => return None,
    };
    let port = Uuid::try_parse(words.next()?).ok()?;
    let rule = match (action, words.next()) {
        (FlowAction::Accept, Some(rule)) => Some(Uuid::try_parse(rule).ok()?),
        (FlowAction::Reject, None) => None,
        _ => return None,
    };
    Some((action, direction, port, rule))
}

/// The flow of an IPv4 or IPv6 packet (possibly cut short after its headers), and its length on
/// the wire.
pub fn parse_packet(packet: &[u8]) -> Option<(FlowTuple, u64)> {
    let (src, dst, mut protocol, mut offset, length, first_fragment) = match packet.first()? >> 4 {
        4 => {
            let header = packet.get(..20)?;
            let ihl = usize::from(header[0] & 0x0f) * 4;
            let length = u16::from_be_bytes([header[2], header[3]]);
            let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&header[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&header[16..20]).ok()?);
            (IpAddr::V4(src), IpAddr::V4(dst), header[9], ihl, u64::from(length), fragment_offset == 0)
        }
        6 => {
            let header = packet.get(..40)?;
            let length = u64::from(u16::from_be_bytes([header[4], header[5]])) + 40;
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
            (IpAddr::V6(src), IpAddr::V6(dst), header[6], 40, length, true)
        }
        _ => return None,
    };
    let mut first = first_fragment;
    // IPv6 extension headers (hop-by-hop, routing, fragment, destination options), a few at most.
    if src.is_ipv6() {
        for _ in 0..4 {
            match protocol {
                0 | 43 | 60 => {
                    let ext = packet.get(offset..offset + 2)?;
                    protocol = ext[0];
                    offset += (usize::from(ext[1]) + 1) * 8;
                }
                44 => {
                    let ext = packet.get(offset..offset + 4)?;
                    protocol = ext[0];
                    first = u16::from_be_bytes([ext[2], ext[3]]) >> 3 == 0;
                    offset += 8;
                }
                _ => break,
            }
        }
    }
    let mut flow = FlowTuple { src, dst, protocol, src_port: None, dst_port: None, icmp: None };
    let l4 = packet.get(offset..).filter(|_| first).unwrap_or_default();
    match protocol {
        6 | 17 | 33 | 132 | 136 if l4.len() >= 4 => {
            flow.src_port = Some(u16::from_be_bytes([l4[0], l4[1]]));
            flow.dst_port = Some(u16::from_be_bytes([l4[2], l4[3]]));
        }
        1 | 58 if l4.len() >= 2 => flow.icmp = Some((l4[0], l4[1])),
        _ => {}
    }
    Some((flow, length))
}

/// The logged packets in one datagram of an [`NflogSocket`]; anything else (or malformed) is
/// skipped.
pub fn parse_messages(buffer: &[u8]) -> Vec<LoggedPacket> {
    let mut packets = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buffer.len() {
        let len = u32::from_ne_bytes(buffer[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
        if len < NLMSG_HDRLEN || at + len > buffer.len() {
            break;
        }
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
            && let Some(packet) = parse_packet_message(&buffer[at + NLMSG_HDRLEN..at + len])
        {
            packets.push(packet);
        }
        at += len.next_multiple_of(4);
    }
    packets
}

/// One NFLOG packet message after its netlink header: the nfgenmsg, then attributes.
fn parse_packet_message(body: &[u8]) -> Option<LoggedPacket> {
    let mut at = 4;
    let (mut prefix, mut payload) = (None, None);
    while at + 4 <= body.len() {
        let len = usize::from(u16::from_ne_bytes([body[at], body[at + 1]]));
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > body.len() {
            break;
        }
        let value = &body[at + 4..at + len];
        match kind {
            NFULA_PREFIX => prefix = Some(value.split(|b| *b == 0).next().unwrap_or_default()),
            NFULA_PAYLOAD => payload = Some(value),
            _ => {}
        }
        at += len.next_multiple_of(4);
    }
    let (action, direction, port, rule) = parse_prefix(std::str::from_utf8(prefix?).ok()?)?;
    let (flow, bytes) = parse_packet(payload?)?;
    Some(LoggedPacket { port, direction, action, rule, flow, bytes })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    port: Uuid,
    direction: Direction,
    action: FlowAction,
    rule: Option<Uuid>,
    flow: FlowTuple,
    minute: i64,
}

#[derive(Debug, Clone, Copy)]
struct FlowCount {
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
}

/// Logged packets summed per flow per minute, at most `max_flows` flows at a time.
#[derive(Debug)]
pub struct FlowAggregator {
    flows: HashMap<FlowKey, FlowCount>,
    max_flows: usize,
    /// Packets of flows that did not fit, since the last [`FlowAggregator::drain`].
    pub dropped: u64,
}

impl FlowAggregator {
    pub fn new(max_flows: usize) -> FlowAggregator {
        FlowAggregator { flows: HashMap::new(), max_flows, dropped: 0 }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Counts `packet`, seen at `now` (Unix seconds).
    pub fn add(&mut self, packet: &LoggedPacket, now: i64) {
        let key = FlowKey {
            port: packet.port,
            direction: packet.direction,
            action: packet.action,
            rule: packet.rule,
            flow: packet.flow,
            minute: now.div_euclid(60),
        };
        if let Some(count) = self.flows.get_mut(&key) {
            count.packets += 1;
            count.bytes += packet.bytes;
            count.end = count.end.max(now);
        } else if self.flows.len() < self.max_flows {
            self.flows.insert(key, FlowCount { packets: 1, bytes: packet.bytes, start: now, end: now });
        } else {
            self.dropped += 1;
        }
    }

    /// Every flow as a record, emptying the aggregator (a flow still going on in the same minute
    /// starts a new record: records of one flow never overlap).
    pub fn drain(&mut self) -> (Vec<FlowRecord>, u64) {
        let records = self
            .flows
            .drain()
            .map(|(key, count)| FlowRecord {
                port_id: key.port,
                direction: key.direction,
                src_addr: key.flow.src,
                src_port: key.flow.src_port,
                dst_addr: key.flow.dst,
                dst_port: key.flow.dst_port,
                protocol: key.flow.protocol,
                icmp_type: key.flow.icmp.map(|(t, _)| t),
                icmp_code: key.flow.icmp.map(|(_, c)| c),
                packets: count.packets,
                bytes: count.bytes,
                start: count.start,
                end: count.end,
                action: key.action,
                rule_id: key.rule,
            })
            .collect();
        (records, std::mem::take(&mut self.dropped))
    }
}

/// Records waiting for the API, at most `max_records`: what a failed send leaves is sent with the
/// next batch; past the cap the oldest are dropped and counted.
#[derive(Debug)]
pub struct FlowOutbox {
    records: std::collections::VecDeque<FlowRecord>,
    max_records: usize,
    dropped: u64,
}

impl FlowOutbox {
    pub fn new(max_records: usize) -> FlowOutbox {
        FlowOutbox { records: Default::default(), max_records, dropped: 0 }
    }

    pub fn push(&mut self, records: Vec<FlowRecord>, dropped: u64) {
        self.dropped += dropped;
        for record in records {
            if self.records.len() >= self.max_records {
                self.records.pop_front();
                self.dropped += 1;
            }
            self.records.push_back(record);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dropped == 0
    }

    /// The next report: at most `batch` records (the oldest).
    pub fn report(&self, batch: usize) -> FlowLogReport {
        FlowLogReport { records: self.records.iter().take(batch).cloned().collect(), dropped_flows: self.dropped }
    }

    /// The API accepted `report`.
    pub fn sent(&mut self, report: &FlowLogReport) {
        self.records.drain(..report.records.len().min(self.records.len()));
        self.dropped = self.dropped.saturating_sub(report.dropped_flows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::log_prefix;

    fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.resize(40, 0);
        p
    }

    fn message(prefix: &str, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN];
        m.extend_from_slice(&[2, 0, 0, 1]);
        let mut text = prefix.as_bytes().to_vec();
        text.push(0);
        push_attr(&mut m, NFULA_PREFIX, &text);
        push_attr(&mut m, NFULA_PAYLOAD, payload);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET).to_ne_bytes());
        m
    }

    #[test]
    fn prefixes_written_by_the_renderer_parse_back() {
        let (port, rule) = (Uuid::from_u128(7), Uuid::from_u128(9));
        let accept = log_prefix(Some(rule), Direction::Ingress, port);
        assert_eq!(parse_prefix(&accept), Some((FlowAction::Accept, Direction::Ingress, port, Some(rule))));
        let drop = log_prefix(None, Direction::Egress, port);
        assert_eq!(parse_prefix(&drop), Some((FlowAction::Reject, Direction::Egress, port, None)));
        assert!(accept.len() < 128, "nft's prefix limit");
        assert_eq!(parse_prefix("pal d i nonsense"), None);
    }

    #[test]
    fn messages_parse_into_flows_and_aggregate_per_minute() {
        let port = Uuid::from_u128(7);
        let prefix = log_prefix(None, Direction::Ingress, port);
        let mut datagram = message(&prefix, &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 22));
        datagram.extend(message(&prefix, &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 22)));
        datagram.extend(message("someone else's", &ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2)));
        let packets = parse_messages(&datagram);
        assert_eq!(packets.len(), 2);
        assert_eq!((packets[0].flow.dst_port, packets[0].bytes), (Some(22), 60));
        let mut aggregator = FlowAggregator::new(1);
        aggregator.add(&packets[0], 120);
        aggregator.add(&packets[1], 130);
        // Another flow does not fit: dropped and counted.
        let mut other = packets[0].clone();
        other.flow.src_port = Some(40001);
        aggregator.add(&other, 131);
        // The same flow in the next minute is another record.
        let (records, dropped) = aggregator.drain();
        assert_eq!(dropped, 1);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.packets, r.bytes, r.start, r.end, r.action, r.rule_id), (2, 120, 120, 130, FlowAction::Reject, None));
        assert!(aggregator.is_empty());
    }

    #[test]
    fn icmpv6_after_an_extension_header_parses() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        let (flow, bytes) = parse_packet(&p).unwrap();
        assert_eq!((flow.protocol, flow.icmp, flow.src_port, bytes), (58, Some((128, 0)), None, 56));
    }

    #[test]
    fn the_outbox_keeps_what_was_not_sent_and_bounds_the_rest() {
        let record = |n: u16| FlowRecord {
            port_id: Uuid::nil(),
            direction: Direction::Ingress,
            src_addr: "10.0.0.1".parse().unwrap(),
            src_port: Some(n),
            dst_addr: "10.0.0.2".parse().unwrap(),
            dst_port: Some(22),
            protocol: 6,
            icmp_type: None,
            icmp_code: None,
            packets: 1,
            bytes: 60,
            start: 0,
            end: 0,
            action: FlowAction::Reject,
            rule_id: None,
        };
        let mut outbox = FlowOutbox::new(3);
        outbox.push((0..5).map(record).collect(), 1);
        let report = outbox.report(2);
        assert_eq!((report.records[0].src_port, report.dropped_flows), (Some(2), 3));
        outbox.sent(&report);
        assert_eq!(outbox.report(10).records, vec![record(4)]);
        assert_eq!(outbox.report(10).dropped_flows, 0);
    }
}
