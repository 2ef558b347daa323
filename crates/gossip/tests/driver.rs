//! Real UDP on loopback: five members as tasks; 5,000 claims of one reach the others in pages; one
//! is killed (task aborted, socket closed), every survivor sees it Down. Deadlines are generous
//! (this is not a speed test).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_gossip::driver::{spawn, Driver, SystemClock};
use ironlb_gossip::{Config, Keyring, MemberEvent, MemberId, Membership, NodeName};
use tokio::net::UdpSocket;

const SECRET: &[u8] = b"loopback test secret, 32 bytes..";

async fn wait_for(
    driver: &mut Driver,
    deadline: Instant,
    predicate: impl Fn(&MemberEvent) -> bool,
) -> bool {
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), driver.events.recv()).await {
            Ok(Some(event)) if predicate(&event) => return true,
            Ok(None) => return false,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_on_loopback_see_a_killed_one_down() {
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut drivers: BTreeMap<usize, Driver> = BTreeMap::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let me = MemberId::new(
            NodeName::new(format!("node-{index}")).unwrap(),
            1000,
            addrs[index],
        );
        let membership = Membership::new(
            Config::lan("loopback"),
            me,
            Keyring::new(SECRET).unwrap(),
            index as u64,
            Instant::now(),
        )
        .unwrap();
        drivers.insert(
            index,
            spawn(membership, socket, vec![addrs[0]], Arc::new(SystemClock)),
        );
    }
    // Everyone sees the four others up.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, driver) in drivers.iter_mut() {
        let mut up = std::collections::BTreeSet::new();
        while up.len() < 4 {
            let seen = wait_for(driver, deadline, |e| matches!(e, MemberEvent::Up(_))).await;
            assert!(seen, "node-{index} saw only {up:?} come up");
            let members = driver.handle.members().await.unwrap();
            up = members
                .iter()
                .filter(|m| m.liveness.is_active())
                .map(|m| m.id.name.clone())
                .collect();
        }
    }
    // Thousands of claims travel in pages over real sockets.
    let claims: std::collections::BTreeSet<std::net::IpAddr> = (0..5_000u32)
        .map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a40_0000 + i)))
        .collect();
    drivers[&0].handle.set_claims(claims.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for index in 1..5 {
        loop {
            let members = drivers[&index].handle.members().await.unwrap();
            let state = members
                .iter()
                .find(|m| m.id.addr == addrs[0])
                .and_then(|m| m.state.clone());
            if state.is_some_and(|s| s.claims == claims) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node-{index} never got node-0's 5,000 claims"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Kill one: abort its task, which closes its socket.
    let victim = 3;
    let killed = drivers.remove(&victim).unwrap();
    killed.task.abort();
    let _ = killed.task.await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, driver) in drivers.iter_mut() {
        let seen = wait_for(
            driver,
            deadline,
            |e| matches!(e, MemberEvent::Down(id) if id.addr == addrs[victim]),
        )
        .await;
        assert!(seen, "node-{index} never saw node-{victim} down");
    }
    // And a graceful leave is seen as Left.
    let leaver = drivers.remove(&4).unwrap();
    leaver.handle.leave().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, driver) in drivers.iter_mut() {
        let seen = wait_for(
            driver,
            deadline,
            |e| matches!(e, MemberEvent::Left(id) if id.addr == addrs[4]),
        )
        .await;
        assert!(seen, "node-{index} never saw node-4 leave");
    }
}
