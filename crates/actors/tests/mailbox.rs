//! Mailbox overflow behaviour. ractor's mailboxes are unbounded, so the tree bounds what they
//! hold by design: a flood of change signals to `Layer2` coalesces into a handful of reconciles
//! (no queue of work grows with the flood). The layer 2 command queue is a bounded channel
//! (here of one command) that the actor awaits rather than drops from.

mod common;

use std::time::Duration;

use common::{next_command, setup};
use ironlb_actors::metrics::ChildLabels;
use ironlb_actors::tree::Layer2Msg;
use ironlb_announce::l2::io::driver::Command;
use ractor::ActorRef;
use tokio::sync::mpsc;

const FLOOD: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_change_signals_coalesces() {
    let (server, client) = setup().await;
    // A command queue of one: the actor waits for room rather than dropping commands.
    let (tx, mut rx) = mpsc::channel(1);
    let (speaker, handle, shared) =
        common::start_speaker(&client, tx, Vec::new(), Duration::from_millis(200)).await;
    assert!(matches!(
        next_command(&mut rx).await,
        Command::Announce { .. }
    ));
    let layer2: ActorRef<Layer2Msg> = ActorRef::where_is("node-a/layer2").expect("layer2");
    let reconciles = || {
        shared
            .metrics
            .reconciles
            .get_or_create(&ChildLabels {
                child: "layer2".into(),
            })
            .get()
    };
    let before = reconciles();
    for _ in 0..FLOOD {
        layer2.cast(Layer2Msg::Changed).expect("cast");
    }
    ractor::call_t!(layer2, Layer2Msg::Sync, 60_000).expect("sync");
    // Let the coalesced reconcile queued behind the flood run too.
    ractor::call_t!(layer2, Layer2Msg::Sync, 60_000).expect("sync");
    let ran = reconciles() - before;
    assert!(ran >= 1, "the flood was reconciled");
    // Besides the one for the flood, only the snapshots published meanwhile (lease renewals,
    // status objects) reconcile: far fewer than the signals.
    assert!(ran < 100, "{ran} reconciles for {FLOOD} signals");
    // Nothing changed, so no command was produced; the queue still delivers the next one.
    assert!(rx.try_recv().is_err());
    speaker.stop(None);
    let _ = handle.await;
    drop(server);
}
