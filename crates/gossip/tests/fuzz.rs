//! No bytes make the receive path panic (cargo-fuzz needs nightly; proptest runs on stable).

use std::time::{Duration, Instant};

use ironlb_gossip::identity::{MemberId, NodeName};
use ironlb_gossip::{open_and_decode, Config, Input, Keyring, Membership, SealedTransport};
use proptest::prelude::*;

const SECRET: &[u8] = b"a cluster secret of 32 bytes....";

fn transport(boot: u8) -> SealedTransport {
    SealedTransport::new("fuzz", Keyring::new(SECRET).unwrap(), 1400, [boot; 4], 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut receiver = transport(1);
        let _ = open_and_decode(&mut receiver, "10.0.0.1:7946".parse().unwrap(), &bytes);
    }

    #[test]
    fn arbitrary_plaintexts_that_open_do_not_panic(plaintext in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let mut sender = transport(2);
        let mut receiver = transport(3);
        let sealed = sender.seal(&plaintext).unwrap();
        let _ = open_and_decode(&mut receiver, "10.0.0.1:7946".parse().unwrap(), &sealed);
    }

    #[test]
    fn arbitrary_sealed_frames_do_not_panic_the_core(
        kind in 1u8..=9,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let now = Instant::now();
        let me = MemberId::new(NodeName::new("me").unwrap(), 1, "10.0.0.2:7946".parse().unwrap());
        let mut core = Membership::new(Config::lan("fuzz"), me, Keyring::new(SECRET).unwrap(), 1, now).unwrap();
        let mut sender = transport(4);
        let mut plaintext = vec![kind];
        plaintext.extend_from_slice(&body);
        let bytes = sender.seal(&plaintext).unwrap();
        core.handle(now, Input::Datagram { from: "10.0.0.1:7946".parse().unwrap(), bytes });
        core.handle(now + Duration::from_secs(1), Input::Timeout);
        while core.poll_action().is_some() {}
    }
}
