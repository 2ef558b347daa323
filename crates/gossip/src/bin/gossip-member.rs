//! One gossip member as a process, for the multi-process benchmark (`gossip-bench`) and manual
//! tests. Prints one line per membership event and a stats line every `--stats-ms`:
//!
//! ```text
//! READY <name> <incarnation>
//! EVENT <UP|SUSPECT|ALIVE|DOWN|LEFT|UPDATED> <name> <incarnation>
//! STATS <sent_bytes> <sent_datagrams> <received_bytes> <received_datagrams> <active_members>
//! ```
//!
//! `--loss-per-mille N` drops N in 1000 received datagrams (fault injection for the benchmark).
//! `--probe-period-ms`, `--probe-timeout-ms` and `--suspicion-multiplier` override the profile's
//! values (for tuning runs of the benchmark).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_gossip::driver::{
    boot_incarnation, os_seed, spawn_with_options, DriverOptions, SystemClock,
};
use ironlb_gossip::{Config, Keyring, MemberEvent, MemberId, Membership, NodeName, Profile};

struct Args {
    name: String,
    bind: SocketAddr,
    seeds: Vec<SocketAddr>,
    secret: Vec<u8>,
    cluster: String,
    profile: Profile,
    stats_ms: u64,
    loss_per_mille: u32,
    probe_period_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    suspicion_multiplier: Option<u32>,
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16).map_err(|e| e.to_string())
        })
        .collect()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        name: String::new(),
        bind: "127.0.0.1:7946".parse().map_err(|_| "bind")?,
        seeds: Vec::new(),
        secret: Vec::new(),
        cluster: "ironlb".into(),
        profile: Profile::Lan,
        stats_ms: 1000,
        loss_per_mille: 0,
        probe_period_ms: None,
        probe_timeout_ms: None,
        suspicion_multiplier: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => args.name = value,
            "--bind" => args.bind = value.parse().map_err(|e| format!("--bind: {e}"))?,
            "--seeds" => {
                args.seeds = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|e| format!("--seeds {s}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--secret-hex" => args.secret = hex(&value)?,
            "--cluster" => args.cluster = value,
            "--profile" => args.profile = value.parse().map_err(|e| format!("--profile: {e}"))?,
            "--loss-per-mille" => {
                args.loss_per_mille = value
                    .parse()
                    .map_err(|e| format!("--loss-per-mille: {e}"))?
            }
            "--probe-period-ms" => {
                args.probe_period_ms = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--probe-period-ms: {e}"))?,
                )
            }
            "--probe-timeout-ms" => {
                args.probe_timeout_ms = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--probe-timeout-ms: {e}"))?,
                )
            }
            "--suspicion-multiplier" => {
                args.suspicion_multiplier = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--suspicion-multiplier: {e}"))?,
                )
            }
            "--stats-ms" => {
                args.stats_ms = value.parse().map_err(|e| format!("--stats-ms: {e}"))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("gossip-member: {error}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gossip-member: runtime: {error}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let fail = |what: String| -> ! {
        eprintln!("gossip-member: {what}");
        std::process::exit(1);
    };
    let name = NodeName::new(args.name.clone()).unwrap_or_else(|e| fail(e.to_string()));
    let keyring = Keyring::new(&args.secret).unwrap_or_else(|e| fail(e.to_string()));
    let socket = tokio::net::UdpSocket::bind(args.bind)
        .await
        .unwrap_or_else(|e| fail(format!("bind {}: {e}", args.bind)));
    let incarnation = boot_incarnation();
    let me = MemberId::new(name, incarnation, args.bind);
    let mut config = Config::for_profile(args.profile, args.cluster.clone());
    if let Some(ms) = args.probe_period_ms {
        config.probe_period = Duration::from_millis(ms);
        config.gossip_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.probe_timeout_ms {
        config.probe_timeout = Duration::from_millis(ms);
    }
    if let Some(multiplier) = args.suspicion_multiplier {
        config.suspicion_multiplier = multiplier;
    }
    let membership = Membership::new(config, me, keyring, os_seed(), Instant::now())
        .unwrap_or_else(|e| fail(e.to_string()));
    let metrics = membership.metrics().clone();
    let options = DriverOptions {
        receive_loss_per_mille: args.loss_per_mille,
        loss_seed: os_seed(),
    };
    let mut driver = spawn_with_options(
        membership,
        socket,
        args.seeds.clone(),
        Arc::new(SystemClock),
        options,
    );
    say(&format!("READY {} {incarnation}", args.name));
    let mut stats = tokio::time::interval(Duration::from_millis(args.stats_ms.max(10)));
    let mut active = 0i64;
    loop {
        tokio::select! {
            event = driver.events.recv() => {
                let Some(event) = event else { return };
                let (kind, id, delta) = match &event {
                    MemberEvent::Up(id) => ("UP", id, 1),
                    MemberEvent::Suspect(id) => ("SUSPECT", id, 0),
                    MemberEvent::Alive(id) => ("ALIVE", id, 0),
                    MemberEvent::Down(id) => ("DOWN", id, -1),
                    MemberEvent::Left(id) => ("LEFT", id, -1),
                    MemberEvent::Updated(id, _) => ("UPDATED", id, 0),
                    _ => continue,
                };
                active += delta;
                say(&format!("EVENT {kind} {} {}", id.name, id.incarnation));
            }
            _ = stats.tick() => {
                say(&format!(
                    "STATS {} {} {} {} {active}",
                    metrics.sent_bytes.get(),
                    metrics.sent_datagrams.get(),
                    metrics.received_bytes.get(),
                    metrics.received_datagrams.get(),
                ));
            }
        }
    }
}
