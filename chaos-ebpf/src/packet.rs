//! Just enough IPv4/IPv6 + TCP/UDP parsing for the network filters and for corruption, shared
//! by cgroup_skb programs (data starts at the IP header) and TC programs (at the Ethernet
//! header). Every read goes through `bpf_skb_load_bytes`, which bounds-checks at run time.
use aya_ebpf::programs::sk_buff::SkBuff;
use chaos_common::Direction;

pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// TC programs see the Ethernet header first; cgroup_skb programs start at the IP header.
pub(crate) const ETH_HLEN: usize = 14;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

/// A parsed packet, seen from the target: "remote" is the destination of an egress packet and
/// the source of an ingress one.
pub(crate) struct Packet {
    pub(crate) ipv6: bool,
    pub(crate) protocol: u8,
    /// IPv4 addresses use the first 4 bytes.
    pub(crate) remote: [u8; 16],
    /// Offset of the TCP/UDP header, when the packet has one (not a later fragment).
    pub(crate) l4: Option<usize>,
    pub(crate) remote_port: u16,
    pub(crate) local_port: u16,
}

/// Parses the packet whose IP header starts at `l3`. `None` for anything but IPv4/IPv6.
#[inline(always)]
pub(crate) fn parse(skb: &SkBuff, l3: usize, direction: Direction) -> Option<Packet> {
    // skb->protocol holds the EtherType in network byte order.
    let ethertype = u16::from_be(skb.protocol() as u16);
    let mut packet = Packet { ipv6: false, protocol: 0, remote: [0; 16], l4: None, remote_port: 0, local_port: 0 };
    match ethertype {
        ETH_P_IP => {
            let header: [u8; 20] = skb.load(l3).ok()?;
            packet.protocol = header[9];
            let remote_at = if direction == Direction::Egress { 16 } else { 12 };
            packet.remote[..4].copy_from_slice(&header[remote_at..remote_at + 4]);
            let later_fragment = (u16::from(header[6] & 0x1f) << 8 | u16::from(header[7])) != 0;
            if !later_fragment {
                packet.l4 = Some(l3 + usize::from(header[0] & 0x0f) * 4);
            }
        }
        ETH_P_IPV6 => {
            let header: [u8; 40] = skb.load(l3).ok()?;
            packet.ipv6 = true;
            // Extension headers are not followed: such packets have no ports for the filters.
            packet.protocol = header[6];
            let remote_at = if direction == Direction::Egress { 24 } else { 8 };
            packet.remote.copy_from_slice(&header[remote_at..remote_at + 16]);
            packet.l4 = Some(l3 + 40);
        }
        _ => return None,
    }
    if matches!(packet.protocol, IPPROTO_TCP | IPPROTO_UDP)
        && let Some(l4) = packet.l4
    {
        let ports: [u8; 4] = skb.load(l4).ok()?;
        let (source, destination) =
            (u16::from_be_bytes([ports[0], ports[1]]), u16::from_be_bytes([ports[2], ports[3]]));
        (packet.local_port, packet.remote_port) =
            if direction == Direction::Egress { (source, destination) } else { (destination, source) };
    } else {
        packet.l4 = None;
    }
    Some(packet)
}
