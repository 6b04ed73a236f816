//! The network filters of a fault (`--protocol`, `--remote`, `--remote-port`, `--local-port`),
//! all read from maps: one loaded object serves any combination. Every active filter must match.
use aya_ebpf::maps::lpm_trie::Key;
use chaos_common::{FaultConfig, WORDS_PER_PORT_SET, net_filters};

use crate::{
    maps::{PORT_SETS, REMOTE_V4, REMOTE_V6},
    packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, Packet},
};

const REMOTE_PORTS: u32 = 0;
const LOCAL_PORTS: u32 = 1;

#[inline(always)]
pub(crate) fn matches(config: &FaultConfig, packet: &Packet) -> bool {
    let active = config.net_filters;
    if active & net_filters::PROTOCOL != 0 {
        let wanted = config.protocol as u8;
        let icmp_either = wanted == IPPROTO_ICMP && packet.protocol == IPPROTO_ICMPV6;
        if packet.protocol != wanted && !icmp_either {
            return false;
        }
    }
    if active & net_filters::REMOTE_ADDRESS != 0 && !remote_listed(packet) {
        return false;
    }
    let has_ports = packet.l4.is_some();
    if active & net_filters::REMOTE_PORT != 0 && !(has_ports && in_port_set(REMOTE_PORTS, packet.remote_port)) {
        return false;
    }
    if active & net_filters::LOCAL_PORT != 0 && !(has_ports && in_port_set(LOCAL_PORTS, packet.local_port)) {
        return false;
    }
    true
}

#[inline(always)]
fn remote_listed(packet: &Packet) -> bool {
    if packet.ipv6 {
        REMOTE_V6.get(Key::new(128, packet.remote)).is_some()
    } else {
        let mut v4 = [0u8; 4];
        v4.copy_from_slice(&packet.remote[..4]);
        REMOTE_V4.get(Key::new(32, v4)).is_some()
    }
}

#[inline(always)]
fn in_port_set(set: u32, port: u16) -> bool {
    let index = set * WORDS_PER_PORT_SET + u32::from(port / 64);
    PORT_SETS.get(index).is_some_and(|word| word >> (port % 64) & 1 != 0)
}
