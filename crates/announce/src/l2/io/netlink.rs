//! Link discovery and change notifications over rtnetlink.
//!
//! The watcher subscribes to `RTMGRP_LINK` and `RTMGRP_IPV6_IFADDR`; any event makes the driver
//! drain the pending events and take a fresh snapshot (links + IPv6 link-local addresses). A
//! snapshot is a few milliseconds, so a new interface or a carrier change is acted on well
//! within 100 ms, and a burst of events costs one snapshot.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::constants::{RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::Handle;

use crate::l2::proto::interfaces::LinkState;
use crate::l2::proto::packet::MacAddr;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// Opening or binding the socket failed.
    #[error("netlink socket")]
    Socket(#[source] std::io::Error),
    /// A dump request failed.
    #[error("netlink {what} dump")]
    Dump {
        /// `links` or `addresses`.
        what: &'static str,
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
}

type Events = UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    SocketAddr,
)>;

/// Dumps links and watches for changes.
#[derive(Debug)]
pub struct LinkWatcher {
    handle: Handle,
    events: Events,
    connection: tokio::task::JoinHandle<()>,
}

impl LinkWatcher {
    /// Opens the netlink socket, subscribed to link and IPv6 address changes. Needs a tokio
    /// runtime.
    pub fn new() -> Result<Self, NetlinkError> {
        let (mut connection, handle, events) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let groups = SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV6_IFADDR);
        connection
            .socket_mut()
            .socket_mut()
            .bind(&groups)
            .map_err(NetlinkError::Socket)?;
        let connection = tokio::spawn(connection);
        Ok(Self {
            handle,
            events,
            connection,
        })
    }

    /// Waits for the next change notification, then drains the ones already queued. Returns
    /// `false` when the connection is gone.
    pub async fn changed(&mut self) -> bool {
        if self.events.next().await.is_none() {
            return false;
        }
        while self.events.try_recv().is_ok() {}
        true
    }

    /// The current links with their first IPv6 link-local address.
    pub async fn snapshot(&self) -> Result<Vec<LinkState>, NetlinkError> {
        let mut link_locals: BTreeMap<u32, std::net::Ipv6Addr> = BTreeMap::new();
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) =
            addresses
                .try_next()
                .await
                .map_err(|source| NetlinkError::Dump {
                    what: "addresses",
                    source,
                })?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V6(address)) = attribute {
                    if address.is_unicast_link_local() {
                        link_locals.entry(message.header.index).or_insert(*address);
                    }
                }
            }
        }
        let mut links = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|source| NetlinkError::Dump {
                what: "links",
                source,
            })?
        {
            if let Some(mut link) = link_state(&message) {
                link.link_local = link_locals.get(&link.index).copied();
                links.push(link);
            }
        }
        Ok(links)
    }
}

impl Drop for LinkWatcher {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Converts a netlink link message; `None` without a name.
pub fn link_state(message: &LinkMessage) -> Option<LinkState> {
    let flags = message.header.flags;
    let mut name = None;
    let mut mac = None;
    let mut controller = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(value) => name = Some(value.clone()),
            LinkAttribute::Address(bytes) => mac = MacAddr::from_slice(bytes),
            LinkAttribute::Controller(index) if *index != 0 => controller = Some(*index),
            _ => {}
        }
    }
    Some(LinkState {
        index: message.header.index,
        name: name?,
        mac,
        up: flags.contains(LinkFlags::Up),
        running: flags.contains(LinkFlags::Running) || flags.contains(LinkFlags::LowerUp),
        broadcast: flags.contains(LinkFlags::Broadcast),
        noarp: flags.contains(LinkFlags::Noarp),
        loopback: flags.contains(LinkFlags::Loopback),
        controller,
        link_local: None,
    })
}
