//! Chaos tests (root; each builds its own lab, `h3c…`, and removes it, also on failure). They run
//! one at a time (a lock), so that two labs never compete for the machine's two cores. Every
//! test ends with [`ChaosLab::finish`], which checks the invariants.
//!
//! `IRONLB_CHAOS_CYCLES=100 cargo test -p ironlb-chaos --release -- --nocapture owner_killed`
//! is the long run (≥ 100 kills); the default is [`ironlb_chaos::CYCLES_DEFAULT`].

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ironlb_chaos::{
    cbpf, cycles, duplicate_ips, moves_after, root_or_skip, ChaosLab, PortFilters,
    CONVERGENCE_TIMEOUT,
};
use ironlb_lab::bench::stats::Figures;
use ironlb_lab::cluster::{APISERVER, CONTROLLER};
use ironlb_lab::manifests::ServiceSpec;
use ironlb_lab::process::Signal;
use ironlb_lab::topology::{CLIENT, CONTROL_PLANE};
use ironlb_lab::LabError;

/// One lab at a time.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// How long a revived node gets to rejoin before the next fault.
const REJOIN: Duration = Duration::from_secs(2);

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn steady(chaos: &mut ChaosLab) -> Result<String, LabError> {
    chaos.owner(20, Duration::from_secs(30))
}

#[test]
fn owner_killed_repeatedly() -> Result<(), LabError> {
    if !root_or_skip("owner_killed_repeatedly") {
        return Ok(());
    }
    let _guard = lock();
    let cycles = cycles();
    let mut chaos = ChaosLab::start("h3ckill", 3)?;
    let ip = chaos.ip;
    for cycle in 0..cycles {
        let owner = steady(&mut chaos)?;
        chaos.kill(&owner)?;
        let new_owner = chaos.wait_failover(&owner, CONVERGENCE_TIMEOUT)?;
        let (_, arp_owner) = chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
        assert_ne!(arp_owner, owner, "cycle {cycle}: the dead node answers ARP");
        println!("cycle {}: killed {owner}, {new_owner} took over", cycle + 1);
        chaos.revive(&owner)?;
        std::thread::sleep(REJOIN);
    }
    let log = chaos.finish()?;
    let outages = log.outages();
    assert_eq!(outages.len(), cycles);
    let mut figures: Vec<f64> = Vec::new();
    for (index, outage) in outages.iter().enumerate() {
        match outage.outage_ms {
            Some(ms) => figures.push(ms),
            None => panic!("kill {} has no recovery: {outage:?}", index + 1),
        }
    }
    if let Some(figures) = Figures::of(&figures) {
        println!(
            "{cycles} kills of the owner: outage p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, min {:.0} ms (reported, not asserted)",
            figures.p50_ms, figures.p99_ms, figures.max_ms, figures.min_ms
        );
    }
    Ok(())
}

#[test]
fn owner_link_down_then_up() -> Result<(), LabError> {
    if !root_or_skip("owner_link_down_then_up") {
        return Ok(());
    }
    let _guard = lock();
    let mut chaos = ChaosLab::start("h3clink", 3)?;
    let ip = chaos.ip;
    let owner = steady(&mut chaos)?;
    // The cable is pulled: the owner's processes live on, cut off from everyone.
    chaos.mark(&format!("link down {owner}"))?;
    chaos.cluster.lab.set_link(&owner, false)?;
    let new_owner = chaos.wait_failover(&owner, CONVERGENCE_TIMEOUT)?;
    let (_, arp_owner) = chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
    assert_eq!(arp_owner, new_owner);
    // The cable is back: the two sides meet again and must agree on one owner.
    chaos.mark(&format!("link up {owner}"))?;
    chaos.cluster.lab.set_link(&owner, true)?;
    std::thread::sleep(REJOIN);
    let (took, arp_owner) = chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
    println!(
        "link down {owner}: {new_owner} took over; link up: {arp_owner} answers ARP alone ({} ms after the rejoin pause)",
        took.as_millis()
    );
    steady(&mut chaos)?;
    let log = chaos.finish()?;
    let (moves, last) = moves_after(&log, &format!("link up {owner}"));
    println!(
        "after the link came back: {moves} owner change(s) seen by the client, the last {:?} ms after it",
        last.map(|last| last.as_millis())
    );
    Ok(())
}

#[test]
fn owner_partitioned_from_nodes_but_not_client() -> Result<(), LabError> {
    if !root_or_skip("owner_partitioned_from_nodes_but_not_client") {
        return Ok(());
    }
    let _guard = lock();
    let mut chaos = ChaosLab::start("h3cpart", 3)?;
    let ip = chaos.ip;
    let owner = steady(&mut chaos)?;
    let mac_of = |node: &str| {
        chaos
            .macs
            .iter()
            .find(|(_, name)| name.as_str() == node)
            .map(|(mac, _)| mac.clone())
    };
    let owner_mac = mac_of(&owner).ok_or_else(|| LabError::Spec("owner MAC unknown".into()))?;
    let others: Vec<String> = chaos
        .nodes
        .iter()
        .filter(|node| **node != owner)
        .cloned()
        .collect();
    let other_macs: Vec<String> = others.iter().filter_map(|node| mac_of(node)).collect();
    let mut filters = PortFilters::new(&chaos.cluster.lab);
    let from_others = cbpf::source_mac_in(&other_macs)
        .ok_or_else(|| LabError::Spec("cannot build the partition filter".into()))?;
    let from_owner = cbpf::source_mac_in(std::slice::from_ref(&owner_mac))
        .ok_or_else(|| LabError::Spec("cannot build the partition filter".into()))?;
    chaos.mark(&format!("partition {owner} from {others:?}"))?;
    filters.add(&owner, &from_others)?;
    for other in &others {
        filters.add(other, &from_owner)?;
    }
    let partitioned_at = Instant::now();
    // Watch who answers ARP for a while: split brain may show for a moment; it must end.
    let mut timeline: Vec<(Duration, BTreeSet<String>)> = Vec::new();
    while partitioned_at.elapsed() < Duration::from_secs(8) {
        timeline.push((partitioned_at.elapsed(), chaos.arp_owners(ip)));
    }
    let (took, single) = chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
    let last_split = timeline
        .iter()
        .rev()
        .find(|(_, owners)| owners.len() > 1)
        .map(|(at, _)| *at);
    println!(
        "partition of {owner}: ARP owners over time {:?}; single owner {single} (last split brain seen at {:?}, {} ms more to converge after the watch)",
        timeline
            .iter()
            .map(|(at, owners)| (at.as_millis(), owners.clone()))
            .collect::<Vec<_>>(),
        last_split.map(|at| at.as_millis()),
        took.as_millis()
    );
    let dropped = filters.dropped();
    assert!(dropped > 0, "the partition filters dropped nothing");
    // Heal: one owner again and the client still served.
    chaos.mark("heal the partition")?;
    filters.clear();
    std::thread::sleep(REJOIN);
    chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
    steady(&mut chaos)?;
    chaos.finish()?;
    Ok(())
}

#[test]
fn apiserver_stopped_failover_continues() -> Result<(), LabError> {
    if !root_or_skip("apiserver_stopped_failover_continues") {
        return Ok(());
    }
    let _guard = lock();
    let mut chaos = ChaosLab::start("h3capi", 3)?;
    let ip = chaos.ip;
    chaos.refresh_allocated();
    chaos.mark("API server killed")?;
    chaos.cluster.signal(APISERVER, Signal::Kill)?;
    std::thread::sleep(Duration::from_secs(2));
    // Announcements continue without the API...
    let owner = steady(&mut chaos)?;
    // ...and so does failover.
    chaos.kill(&owner)?;
    let new_owner = chaos.wait_failover(&owner, CONVERGENCE_TIMEOUT)?;
    let (_, arp_owner) = chaos.wait_single_arp_owner(ip, CONVERGENCE_TIMEOUT)?;
    assert_eq!(arp_owner, new_owner);
    println!("API server down: killed {owner}, {new_owner} took over");
    chaos.finish()?;
    Ok(())
}

#[test]
fn controller_killed_during_churn() -> Result<(), LabError> {
    if !root_or_skip("controller_killed_during_churn") {
        return Ok(());
    }
    let _guard = lock();
    let mut chaos = ChaosLab::start("h3cchurn", 3)?;
    let nodes = chaos.nodes.clone();
    let names: Vec<String> = (0..5).map(|index| format!("churn{index}")).collect();
    let mut present: BTreeSet<String> = BTreeSet::new();
    // A fixed schedule: create, delete and re-create Services while the controller is killed
    // with SIGKILL every few operations and started again.
    for round in 0..15_usize {
        let name = names
            .get((round * 3) % names.len())
            .cloned()
            .unwrap_or_default();
        let spec = ServiceSpec::new(&name);
        if present.remove(&name) {
            chaos.cluster.kubectl(&[
                "delete",
                "service",
                &name,
                "-n",
                "default",
                "--wait=false",
            ])?;
        } else {
            chaos.cluster.apply(&spec.yaml())?;
            chaos.cluster.set_endpoints(&spec, &nodes)?;
            present.insert(name);
        }
        if round % 4 == 1 {
            chaos.mark("controller killed")?;
            chaos.cluster.signal(CONTROLLER, Signal::Kill)?;
        }
        if round % 4 == 2 {
            chaos.cluster.start_controller()?;
        }
        if let Some(services) = chaos.refresh_allocated() {
            let duplicates = duplicate_ips(&services);
            assert!(
                duplicates.is_empty(),
                "round {round}: IPs allocated twice: {duplicates:?}"
            );
        }
    }
    chaos.cluster.start_controller()?;
    // After convergence every present Service has one IP (none lost), and no IP is shared.
    let mut services = Default::default();
    chaos.cluster.wait_until(
        "every churn Service has an IP",
        CONVERGENCE_TIMEOUT,
        |cluster| {
            let Ok(text) = cluster.kubectl(&["get", "services", "-A", "-o", "json"]) else {
                return false;
            };
            let Some(current) = ironlb_chaos::service_ips(&text) else {
                return false;
            };
            let done = present.iter().all(|name| {
                current
                    .get(&format!("default/{name}"))
                    .is_some_and(|ips| ips.len() == 1)
            });
            services = current;
            done
        },
    )?;
    let duplicates = duplicate_ips(&services);
    assert!(duplicates.is_empty(), "IPs allocated twice: {duplicates:?}");
    for name in &names {
        let key = format!("default/{name}");
        assert_eq!(
            services.contains_key(&key),
            present.contains(name),
            "{key}: present in the API unlike the schedule"
        );
    }
    println!("churn done: {services:?}");
    chaos.finish()?;
    Ok(())
}

#[test]
fn lossy_lan_no_false_failover() -> Result<(), LabError> {
    if !root_or_skip("lossy_lan_no_false_failover") {
        return Ok(());
    }
    let _guard = lock();
    let mut chaos = ChaosLab::start("h3closs", 3)?;
    let owner = steady(&mut chaos)?;
    // 2% of the frames delivered to every station of the LAN are dropped at the switch. No mark
    // is recorded: any change of owner during the lossy period is a false failover and fails
    // the no-move-without-a-cause invariant.
    let loss_from_us = chaos.probe()?.latest_us();
    let mut filters = PortFilters::new(&chaos.cluster.lab);
    let program = cbpf::random_permille(20);
    let mut roles = chaos.nodes.clone();
    roles.push(CLIENT.to_owned());
    roles.push(CONTROL_PLANE.to_owned());
    for role in &roles {
        filters.add(role, &program)?;
    }
    std::thread::sleep(Duration::from_secs(15));
    let dropped = filters.dropped();
    filters.clear();
    assert!(dropped > 0, "the loss filters dropped nothing");
    let log = chaos.finish()?;
    // Who answered from the start of the loss on (the owner before it was `owner`).
    let nodes: BTreeSet<String> = log
        .segments()
        .into_iter()
        .filter(|segment| segment.to_us >= loss_from_us)
        .map(|segment| segment.node)
        .collect();
    let (sent, answered) = log.counts();
    println!(
        "2% loss for 15 s: {dropped} frames dropped, {answered}/{sent} probes answered, answered by {nodes:?}"
    );
    assert_eq!(
        nodes,
        BTreeSet::from([owner]),
        "the owner changed under packet loss"
    );
    Ok(())
}
