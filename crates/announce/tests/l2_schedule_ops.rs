//! Op-sequence property test of the gratuitous schedule against a model: random takes,
//! releases, interface changes and clock advances, with the invariants checked after every op.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironlb_announce::l2::proto::interfaces::InterfaceSelection;
use ironlb_announce::l2::proto::schedule::{Action, GratuitousSchedule, Input, BURST_OFFSETS_MS};
use proptest::prelude::*;

const IPS: [&str; 3] = ["10.0.0.100", "10.0.0.101", "fd00::100"];
const INTERFACES: [&str; 3] = ["eth0", "eth1", "bond0"];

#[derive(Debug, Clone)]
enum Op {
    Take { ip: usize, only: Option<Vec<usize>> },
    Release { ip: usize },
    Interfaces(Vec<usize>),
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0..IPS.len(),
            proptest::option::of(proptest::collection::vec(0..INTERFACES.len(), 0..3))
        )
            .prop_map(|(ip, only)| Op::Take { ip, only }),
        (0..IPS.len()).prop_map(|ip| Op::Release { ip }),
        proptest::collection::vec(0..INTERFACES.len(), 0..4).prop_map(Op::Interfaces),
        prop_oneof![0u64..30, 0u64..1500, Just(6000u64)].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn names(indexes: &[usize]) -> BTreeSet<String> {
    indexes.iter().map(|i| INTERFACES[*i].to_owned()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn schedule_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let start = Instant::now();
        let mut now = start;
        let mut schedule = GratuitousSchedule::new();
        let mut owned: BTreeMap<IpAddr, InterfaceSelection> = BTreeMap::new();
        let mut eligible: BTreeSet<String> = BTreeSet::new();
        // Last burst start per IP (take of a new IP, or an interface gained).
        let mut last_burst: BTreeMap<IpAddr, Instant> = BTreeMap::new();
        // Sends per (IP, interface) since the model's last burst start of the IP.
        let mut sends_in_burst: BTreeMap<(IpAddr, String), usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Take { ip, only } => {
                    let ip: IpAddr = IPS[ip].parse().unwrap();
                    let selection = match only {
                        Some(list) => InterfaceSelection::Only(names(&list)),
                        None => InterfaceSelection::All,
                    };
                    if owned.get(&ip) != Some(&selection) {
                        last_burst.insert(ip, now);
                        sends_in_burst.retain(|(sent_ip, _), _| *sent_ip != ip);
                    }
                    owned.insert(ip, selection.clone());
                    schedule.handle(now, Input::Take { ip, selection });
                }
                Op::Release { ip } => {
                    let ip: IpAddr = IPS[ip].parse().unwrap();
                    owned.remove(&ip);
                    schedule.handle(now, Input::Release { ip });
                }
                Op::Interfaces(list) => {
                    let new = names(&list);
                    for (ip, selection) in &owned {
                        if selection.effective(&new).difference(&selection.effective(&eligible)).next().is_some() {
                            last_burst.insert(*ip, now);
                            sends_in_burst.retain(|(sent_ip, _), _| sent_ip != ip);
                        }
                    }
                    eligible = new.clone();
                    schedule.handle(now, Input::InterfacesChanged { interfaces: new });
                }
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    schedule.handle_timeout(now);
                }
            }
            let mut sends_in_op: BTreeMap<(IpAddr, String), usize> = BTreeMap::new();
            while let Some(action) = schedule.poll_action() {
                match action {
                    Action::SendGratuitous { ip, interface } => {
                        let selection = owned.get(&ip);
                        prop_assert!(selection.is_some(), "send for {ip}, which is not owned");
                        prop_assert!(eligible.contains(&interface), "send on ineligible {interface}");
                        prop_assert!(selection.is_some_and(|s| s.allows(&interface)), "send on unselected {interface}");
                        // A late timer collapses missed steps into one send, so a burst never
                        // sends more than its steps, and one op never sends twice.
                        let in_burst = sends_in_burst.entry((ip, interface.clone())).or_insert(0);
                        *in_burst += 1;
                        prop_assert!(*in_burst <= BURST_OFFSETS_MS.len(), "more sends than steps for {ip}");
                        let in_op = sends_in_op.entry((ip, interface)).or_insert(0);
                        *in_op += 1;
                        prop_assert!(*in_op == 1, "two sends for {ip} in one op");
                    }
                    Action::NoInterface { ip } => {
                        let selection = owned.get(&ip);
                        prop_assert!(selection.is_some_and(|s| s.effective(&eligible).is_empty()));
                    }
                    Action::TooManyIps { .. } => prop_assert!(false, "three IPs never exceed the limit"),
                }
            }
            if let Some(deadline) = schedule.poll_timeout() {
                prop_assert!(deadline >= now || deadline + Duration::from_millis(1) >= now, "timer in the past after handle");
                let newest = last_burst.values().max().copied().unwrap_or(start);
                prop_assert!(deadline <= newest + Duration::from_millis(*BURST_OFFSETS_MS.last().unwrap()));
            }
        }
        // Quiescence: 5 s without input ends every burst.
        now += Duration::from_secs(5);
        schedule.handle_timeout(now);
        while schedule.poll_action().is_some() {}
        prop_assert_eq!(schedule.poll_timeout(), None);
    }
}
