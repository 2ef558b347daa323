//! The socket options the standard library and tokio do not expose: TCP_MD5SIG (RFC 2385)
//! and IP_MINTTL / IPV6_MINHOPCOUNT (RFC 5082, used by BFD single-hop, RFC 5881 §5).
//! This is the only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// Longest TCP MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MD5_KEY_LEN_MAX: usize = 80;

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h), which the libc crate does not define.
#[repr(C)]
struct TcpMd5Sig {
    address: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    interface_index: i32,
    key: [u8; MD5_KEY_LEN_MAX],
}

/// Sets the RFC 2385 key used for segments to and from `peer` on `socket`.
pub(crate) fn set_tcp_md5sig(
    socket: &impl AsRawFd,
    peer: SocketAddr,
    key: &[u8],
) -> io::Result<()> {
    if key.len() > MD5_KEY_LEN_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    }
    // SAFETY: sockaddr_storage and the integer fields are plain data for which all-zero bytes
    // are a valid value.
    let mut signature: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer.ip() {
        IpAddr::V4(address) => {
            let sockaddr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(address.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in; we write one
            // sockaddr_in at its start.
            unsafe {
                std::ptr::write(std::ptr::from_mut(&mut signature.address).cast(), sockaddr);
            }
        }
        IpAddr::V6(address) => {
            let sockaddr = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: address.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::write(std::ptr::from_mut(&mut signature.address).cast(), sockaddr);
            }
        }
    }
    signature.key_len = key.len() as u16;
    signature.key[..key.len()].copy_from_slice(key);
    set_option(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &signature)
}

/// Drops received packets whose TTL (hop limit) is below `ttl_min`.
pub(crate) fn set_min_ttl(socket: &impl AsRawFd, ipv6: bool, ttl_min: u8) -> io::Result<()> {
    let value = libc::c_int::from(ttl_min);
    if ipv6 {
        set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &value)
    } else {
        set_option(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &value)
    }
}

/// Sets the TTL (IPv4) or unicast hop limit (IPv6) of outgoing packets.
pub(crate) fn set_ttl(socket: &impl AsRawFd, ipv6: bool, ttl: u8) -> io::Result<()> {
    let value = libc::c_int::from(ttl);
    if ipv6 {
        set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &value)
    } else {
        set_option(socket, libc::IPPROTO_IP, libc::IP_TTL, &value)
    }
}

fn set_option<T>(socket: &impl AsRawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    let length = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to a live, initialised T of `length` bytes for the duration of
    // the call, and the kernel only reads it; the descriptor belongs to `socket`.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            length,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
