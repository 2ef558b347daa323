//! `ironlb demo`: ironlb's main job on one machine, in network namespaces.
//!
//! Per scenario (layer 2, BGP) it builds a lab, starts the API stand-in, the controller and
//! one speaker per node, applies the tutorials' manifests with kubectl, creates a LoadBalancer
//! Service with backends on every node, shows `kubectl get svc`, has the client reach the
//! Service IP, kills the node serving it (link down + kill -9 of all its processes), measures
//! the client's outage with the probe (a UDP request every 10 ms), and reports: a progress log,
//! a final table, JSON (`--json`) and a picture (`--plot`).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Cluster, METALLB_NAMESPACE};
use crate::error::LabError;
use crate::frr::{Router, RouterOptions};
use crate::manifests::{
    bgp_config, l2_config, ServiceSpec, BGP_CLIENT_ROUTE_V4, HTTP_PORT, UDP_PORT,
};
use crate::observe::{curl, node_macs, Capture};
use crate::plot::Panel;
use crate::probe::{ProbeConfig, ProbeLog, ProbeProcess};
use crate::topology::{
    is_root, missing_tools, Lab, LabSpec, Tool, CLIENT, ROUTER, TOOLS_BASE, TOOLS_BGP, TOOLS_L2,
};

/// The probe mark set when the router no longer routes to the killed node.
const WITHDRAWN_MARK: &str = "route withdrawn";

/// Which scenarios to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Layer 2 (ARP/NDP), the client on the LAN.
    L2,
    /// BGP: the client behind an FRR router peering with every node.
    Bgp,
}

impl Scenario {
    /// `l2` or `bgp` (the JSON key).
    pub fn key(self) -> &'static str {
        match self {
            Self::L2 => "l2",
            Self::Bgp => "bgp",
        }
    }
}

/// The demo's options (the command's flags).
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Node namespaces per lab.
    pub nodes: usize,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Leave the (last) lab running and print how to explore and remove it.
    pub keep: bool,
    /// Write the figures as JSON here.
    pub json: Option<PathBuf>,
    /// Draw the failover into this SVG file.
    pub plot: Option<PathBuf>,
    /// Namespace prefix (`ilb`; the BGP lab uses `<prefix>bgp`).
    pub prefix: String,
    /// The `ironlb` binary (the running one).
    pub binary: PathBuf,
}

/// The figures of one scenario run (the JSON keys the issue lists, and a few more).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioReport {
    /// The Service's IP.
    pub service_ip: Option<IpAddr>,
    /// The node that served the client before the kill.
    pub owner_before: Option<String>,
    /// The node that served the client after the kill.
    pub owner_after: Option<String>,
    /// The client got answers before the kill.
    pub reached_before: bool,
    /// The client got answers after the kill.
    pub reached_after: bool,
    /// Last answer before the kill to first answer after it, on the client's clock.
    pub outage_ms: Option<f64>,
    /// Probe requests sent.
    pub requests_sent: u64,
    /// Probe requests answered.
    pub requests_answered: u64,
    /// For BGP: the router's next hops for the Service IP before the kill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_hops_before: Vec<IpAddr>,
    /// For BGP: the router's next hops after the kill.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_hops_after: Vec<IpAddr>,
    /// Steps that failed, in order (empty when the scenario passed).
    pub failed_steps: Vec<String>,
}

/// The whole demo's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DemoReport {
    /// Every step of every scenario passed.
    pub ok: bool,
    /// The layer 2 run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l2: Option<ScenarioReport>,
    /// The BGP run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<ScenarioReport>,
}

/// Why the demo cannot run here, with what to do about it.
pub fn preflight(scenarios: &[Scenario]) -> Result<(), String> {
    if !is_root() {
        return Err(
            "ironlb demo builds network namespaces and needs root: run it as root (sudo ironlb demo)"
                .into(),
        );
    }
    let mut tools: Vec<Tool> = TOOLS_BASE.to_vec();
    tools.extend_from_slice(TOOLS_L2);
    if scenarios.contains(&Scenario::Bgp) {
        tools.extend_from_slice(TOOLS_BGP);
    }
    let missing = missing_tools(&tools);
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|tool| tool.package).collect();
    packages.sort_unstable();
    packages.dedup();
    let programs: Vec<&str> = missing.iter().map(|tool| tool.program).collect();
    let kubectl_note = if packages.contains(&"kubectl") {
        " (kubectl is not in Debian's archive: it comes from the Kubernetes apt repository, pkgs.k8s.io)"
    } else {
        ""
    };
    Err(format!(
        "missing tools: {}. Install them: apt-get install {}{kubectl_note}, or run scripts/install-deps.sh",
        programs.join(", "),
        packages.join(" ")
    ))
}

/// Prints progress lines with the time since the demo started.
struct Progress {
    start: Instant,
}

impl Progress {
    fn say(&self, text: &str) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let mut first = true;
        for line in text.lines() {
            if first {
                println!("[{elapsed:6.1}s] {line}");
                first = false;
            } else {
                println!("          {line}");
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// Runs the demo; returns its report (also written to `--json`) and draws `--plot`.
pub fn run(options: &DemoOptions) -> Result<DemoReport, LabError> {
    preflight(&options.scenarios).map_err(LabError::Spec)?;
    let progress = Progress {
        start: Instant::now(),
    };
    let mut report = DemoReport {
        ok: true,
        ..DemoReport::default()
    };
    let mut panels = Vec::new();
    let last = options.scenarios.len().saturating_sub(1);
    for (index, scenario) in options.scenarios.iter().copied().enumerate() {
        let keep = options.keep && index == last;
        let (scenario_report, panel) = run_scenario(options, scenario, keep, &progress);
        report.ok &= scenario_report.failed_steps.is_empty();
        if let Some(panel) = panel {
            panels.push(panel);
        }
        match scenario {
            Scenario::L2 => report.l2 = Some(scenario_report),
            Scenario::Bgp => report.bgp = Some(scenario_report),
        }
    }
    print_table(&report);
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| LabError::Parse {
            what: "the demo report".into(),
            detail: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| LabError::File {
            path: path.clone(),
            source,
        })?;
        progress.say(&format!("figures written to {}", path.display()));
    }
    if let Some(path) = &options.plot {
        crate::plot::draw(path, &panels)?;
        progress.say(&format!("failover picture drawn to {}", path.display()));
    }
    Ok(report)
}

/// One scenario in its own lab; never fails as a whole: failed steps are recorded.
fn run_scenario(
    options: &DemoOptions,
    scenario: Scenario,
    keep: bool,
    progress: &Progress,
) -> (ScenarioReport, Option<Panel>) {
    let mut report = ScenarioReport::default();
    let prefix = match scenario {
        Scenario::L2 => options.prefix.clone(),
        Scenario::Bgp => format!("{}bgp", options.prefix),
    };
    progress.say(&format!(
        "== scenario {} (lab prefix {prefix})",
        scenario.key()
    ));
    let mut spec = LabSpec::new(&prefix, options.nodes);
    spec.router = scenario == Scenario::Bgp;
    let lab = match Lab::create(spec) {
        Ok(lab) => lab,
        Err(error) => {
            progress.say(&format!("FAILED building the lab: {error}"));
            report.failed_steps.push(format!("build the lab: {error}"));
            return (report, None);
        }
    };
    progress.say(&format!(
        "lab up: bridge LAN 192.168.1.0/24 + fd00:1::/64, {} nodes ({}), client {}, control plane {}{}",
        options.nodes,
        lab.nodes().join(", "),
        lab.namespace(CLIENT),
        lab.namespace(crate::topology::CONTROL_PLANE),
        if lab.has_router() {
            format!(", FRR router {} with the client behind it", lab.namespace(ROUTER))
        } else {
            String::new()
        }
    ));
    let mut cluster = match Cluster::start(lab, &options.binary) {
        Ok(cluster) => cluster,
        Err(error) => {
            progress.say(&format!("FAILED starting the API stand-in: {error}"));
            report
                .failed_steps
                .push(format!("start the API stand-in: {error}"));
            return (report, None);
        }
    };
    let mut runner = Runner {
        cluster: &mut cluster,
        progress,
        report: &mut report,
        scenario,
    };
    let panel = runner.run();
    if keep {
        cluster.lab.keep();
        progress.say("lab kept (--keep). Explore it:");
        let mut lines = vec![
            format!("{} get svc -A", cluster.kubectl_line()),
            format!(
                "{} get servicel2statuses -n {METALLB_NAMESPACE}",
                cluster.kubectl_line()
            ),
        ];
        if scenario == Scenario::Bgp {
            lines.push(format!(
                "vtysh -N {} -c 'show ip route bgp'",
                cluster.lab.namespace(ROUTER)
            ));
        }
        let ip = report
            .service_ip
            .map_or("<EXTERNAL-IP>".to_owned(), |ip| ip.to_string());
        lines.extend(
            cluster
                .lab
                .explore_commands()
                .into_iter()
                .map(|line| line.replace("<EXTERNAL-IP>", &ip)),
        );
        for line in lines {
            println!("    {line}");
        }
    } else {
        progress.say(&format!("removing lab {prefix}"));
    }
    (report, panel)
}

struct Runner<'a> {
    cluster: &'a mut Cluster,
    progress: &'a Progress,
    report: &'a mut ScenarioReport,
    scenario: Scenario,
}

/// Records a failed step and says so.
fn fail(
    progress: &Progress,
    report: &mut ScenarioReport,
    step: &str,
    error: &dyn std::fmt::Display,
) {
    progress.say(&format!("FAILED {step}: {error}"));
    report.failed_steps.push(format!("{step}: {error}"));
}

impl Runner<'_> {
    fn run(&mut self) -> Option<Panel> {
        match self.try_run() {
            Ok(panel) => panel,
            Err(error) => {
                fail(self.progress, self.report, "scenario", &error);
                None
            }
        }
    }

    fn try_run(&mut self) -> Result<Option<Panel>, LabError> {
        let cluster = &mut *self.cluster;
        let progress = self.progress;
        progress.say(&format!(
            "API stand-in up in {} (kubeconfig {}); Nodes registered with their namespace addresses; \
             memberlist Secret created with `kubectl create secret generic memberlist --from-literal=secretkey=…`",
            cluster.lab.namespace(crate::topology::CONTROL_PLANE),
            cluster.kubeconfig().display()
        ));
        let manifests = match self.scenario {
            Scenario::L2 => l2_config(false),
            Scenario::Bgp => bgp_config(&cluster.lab.v4(ROUTER)?.to_string(), true),
        };
        let applied = cluster.apply(&manifests)?;
        progress.say(&format!(
            "kubectl apply (the tutorial's manifests):\n{}",
            applied.trim_end()
        ));
        let router = if self.scenario == Scenario::Bgp {
            let router = Router::start(
                &mut cluster.lab,
                RouterOptions {
                    bfd: true,
                    graceful_restart: false,
                },
            )?;
            cluster.lab.route_client_via_router(BGP_CLIENT_ROUTE_V4)?;
            progress.say(
                "FRR router up (zebra, bfdd, bgpd), peering with every node (BFD 300 ms x 3), ECMP across them",
            );
            Some(router)
        } else {
            None
        };
        cluster.start_controller()?;
        let http_port = HTTP_PORT.to_string();
        for node in cluster.lab.nodes() {
            cluster.start_backend(&node, &["--http-port", &http_port])?;
        }
        cluster.start_speakers(&[])?;
        progress.say(
            "controller, a backend and a speaker per node started (logs in the lab directory)",
        );

        let mut spec = ServiceSpec::new("web");
        if self.scenario == Scenario::Bgp {
            spec = spec.annotation("metallb.io/address-pool", "bgp-pool");
        }
        let nodes = cluster.lab.nodes();
        let ip = cluster.create_service(&spec, &nodes)?;
        self.report.service_ip = Some(ip);
        let shown = cluster.kubectl(&["get", "svc", "web", "-n", "default"])?;
        progress.say(&format!("kubectl get svc:\n{}", shown.trim_end()));

        // Wait until the network delivers the IP.
        if let Some(router) = &router {
            let prefix = format!("{ip}/32");
            let deadline = Instant::now() + Duration::from_secs(60);
            while router.next_hops(&prefix).len() < nodes.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            // Fast failover needs BFD up on every session before the kill.
            while router.bfd_up().len() < nodes.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            progress.say(&format!(
                "BFD sessions up with {} of {} nodes",
                router.bfd_up().len(),
                nodes.len()
            ));
            let hops = router.next_hops(&prefix);
            self.report.next_hops_before = hops.clone();
            progress.say(&format!(
                "FRR's routes for {prefix} before (ECMP over {} next hops):\n{}",
                hops.len(),
                router
                    .text(&format!("show ip route {prefix}"))
                    .unwrap_or_default()
                    .trim_end()
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut answer = None;
        while answer.is_none() && Instant::now() < deadline {
            answer = curl(&cluster.lab, CLIENT, ip, HTTP_PORT, Duration::from_secs(2));
            if answer.is_none() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let Some(first) = answer else {
            fail(
                self.progress,
                self.report,
                "reach the Service",
                &format!("curl http://{ip}/ got no answer within 60 s"),
            );
            return Ok(None);
        };
        progress.say(&format!("client: curl http://{ip}/ → answered by {first}"));

        // The probe from the client, then the kill.
        let mut capture = match self.scenario {
            Scenario::L2 => Some(Capture::start(&mut self.cluster.lab, "demo")?),
            Scenario::Bgp => None,
        };
        let cluster = &mut *self.cluster;
        let mut command = cluster
            .lab
            .command(CLIENT, &cluster.binary().display().to_string());
        command.args(ProbeProcess::args(&ProbeConfig::udp(SocketAddr::new(
            ip, UDP_PORT,
        ))));
        // The probe's own messages go to the lab's log directory; the demo reports its figures.
        let probe_log = cluster.lab.dir().join("probe.log");
        let stderr = std::fs::File::create(&probe_log).map_err(|source| LabError::File {
            path: probe_log.clone(),
            source,
        })?;
        command.stderr(stderr);
        let mut probe = ProbeProcess::spawn(command).map_err(|e| LabError::Spec(e.to_string()))?;
        if !probe.wait_for_answers(None, 0, 50, Duration::from_secs(20)) {
            let log = probe.stop().unwrap_or_default();
            self.report.requests_sent = log.counts().0;
            fail(
                self.progress,
                self.report,
                "probe",
                &"the UDP probe got fewer than 50 answers in 20 s",
            );
            return Ok(None);
        }
        self.report.reached_before = true;
        let owner = probe
            .log()
            .last_answer()
            .map(|answer| answer.node.clone())
            .unwrap_or(first);
        self.report.owner_before = Some(owner.clone());
        progress.say(&format!(
            "probe: a UDP request to {ip}:{UDP_PORT} every 10 ms; answered by {owner}"
        ));
        progress.say(&format!(
            "killing {owner}: its link goes down and every process in it gets SIGKILL"
        ));
        probe
            .mark_kill(&owner)
            .map_err(|e| LabError::Spec(e.to_string()))?;
        cluster.lab.kill_node(&owner)?;
        let kill_seen = probe.wait_for(Duration::from_secs(5), |log| !log.marks.is_empty());
        let kill_us = probe
            .log()
            .marks
            .first()
            .map(|mark| mark.at_us)
            .unwrap_or_else(|| probe.latest_us());
        if let Some(router) = &router {
            // Mark on the probe's clock when the router drops the dead node's next hop.
            let prefix = format!("{ip}/32");
            let dead = IpAddr::V4(cluster.lab.v4(&owner)?);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if !router.next_hops(&prefix).contains(&dead) {
                    let _ = probe.mark(WITHDRAWN_MARK);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let recovered = kill_seen
            && probe.wait_for(Duration::from_secs(60), |log| {
                log.samples.iter().any(|sample| {
                    sample.sent_us > kill_us
                        && sample.answer.as_ref().is_some_and(|a| a.node != owner)
                })
            });
        // A second of answers after the switch, for the picture.
        std::thread::sleep(Duration::from_secs(1));
        let log: ProbeLog = probe.stop().map_err(|e| LabError::Spec(e.to_string()))?;
        let (sent, answered) = log.counts();
        self.report.requests_sent = sent;
        self.report.requests_answered = answered;
        let tally: Vec<String> = log
            .per_node()
            .iter()
            .map(|(node, answers)| format!("{node} {answers}"))
            .collect();
        progress.say(&format!(
            "probe: {answered} of {sent} requests answered (per node: {})",
            tally.join(", ")
        ));
        let outage = log.outage_after(kill_us, Some(&owner));
        self.report.outage_ms = outage.outage_ms;
        self.report.reached_after = recovered;
        self.report.owner_after = outage.first_after.as_ref().map(|a| a.node.clone());
        let mut marks = vec![(format!("kill {owner}"), kill_us)];
        if let Some(withdrawn) = log.marks.iter().find(|mark| mark.label == WITHDRAWN_MARK) {
            progress.say(&format!(
                "the router dropped {owner}'s next hop {:.0} ms after the kill",
                withdrawn.at_us.saturating_sub(kill_us) as f64 / 1000.0
            ));
            marks.push((format!("router drops {owner}'s route"), withdrawn.at_us));
        }
        if recovered {
            progress.say(&format!(
                "client's requests moved to {}: outage {:.0} ms (last answer before the kill → first answer after it)",
                self.report.owner_after.as_deref().unwrap_or("?"),
                outage.outage_ms.unwrap_or(f64::NAN)
            ));
        } else {
            fail(
                self.progress,
                self.report,
                "failover",
                &format!("no node answered within 60 s after {owner} died"),
            );
        }
        if let Some(capture) = capture.take() {
            let started_unix_us = log.start.as_ref().map(|s| s.started_unix_ms * 1000);
            let macs = node_macs(&cluster.lab)?;
            let first_garp = capture
                .announcements(&cluster.lab, ip)
                .into_iter()
                .filter(|a| macs.get(&a.mac).is_some_and(|node| *node != owner))
                .filter_map(|a| Some(a.at_unix_us?.saturating_sub(started_unix_us?)))
                .find(|at_us| *at_us >= kill_us.saturating_sub(1_000));
            match first_garp {
                Some(at_us) => {
                    progress.say(&format!(
                        "first gratuitous ARP from the new owner {:.0} ms after the kill",
                        (at_us.saturating_sub(kill_us)) as f64 / 1000.0
                    ));
                    marks.push(("first gratuitous ARP".to_owned(), at_us));
                }
                None if recovered => {
                    fail(
                        self.progress,
                        self.report,
                        "gratuitous ARP",
                        &"the client saw no gratuitous ARP from the new owner",
                    );
                }
                None => {}
            }
        }
        if let Some(router) = &router {
            let prefix = format!("{ip}/32");
            let deadline = Instant::now() + Duration::from_secs(30);
            while router.next_hops(&prefix).len() >= nodes.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let hops = router.next_hops(&prefix);
            self.report.next_hops_after = hops.clone();
            progress.say(&format!(
                "FRR's routes for {prefix} after ({} next hops):\n{}",
                hops.len(),
                router
                    .text(&format!("show ip route {prefix}"))
                    .unwrap_or_default()
                    .trim_end()
            ));
            let dead = cluster.lab.v4(&owner)?;
            if hops.contains(&IpAddr::V4(dead)) {
                fail(
                    self.progress,
                    self.report,
                    "route withdrawal",
                    &format!("the router still routes {prefix} to {owner}"),
                );
            }
        }
        if recovered {
            match curl(&cluster.lab, CLIENT, ip, HTTP_PORT, Duration::from_secs(3)) {
                Some(node) => {
                    progress.say(&format!("client: curl http://{ip}/ → answered by {node}"))
                }
                None => fail(
                    self.progress,
                    self.report,
                    "reach the Service after the kill",
                    &"curl got no answer",
                ),
            }
        }
        let title = format!(
            "{}: client answers from {ip}, {owner} killed (outage {} ms)",
            self.scenario.key(),
            outage
                .outage_ms
                .map_or("?".to_owned(), |ms| format!("{ms:.0}"))
        );
        Ok(Some(Panel {
            title,
            log,
            marks,
            nodes,
        }))
    }
}

fn print_table(report: &DemoReport) {
    println!();
    println!(
        "{:<9}{:<17}{:<14}{:<13}{:<18}{:>11}  result",
        "scenario", "service IP", "owner before", "owner after", "reached (before/after)", "outage"
    );
    for (key, scenario) in [("l2", &report.l2), ("bgp", &report.bgp)] {
        let Some(scenario) = scenario else { continue };
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!(
            "{:<9}{:<17}{:<14}{:<13}{:<18}{:>11}  {}",
            key,
            scenario
                .service_ip
                .map_or("-".to_owned(), |ip| ip.to_string()),
            scenario.owner_before.as_deref().unwrap_or("-"),
            scenario.owner_after.as_deref().unwrap_or("-"),
            format!(
                "{} / {}",
                yes(scenario.reached_before),
                yes(scenario.reached_after)
            ),
            scenario
                .outage_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.0} ms")),
            if scenario.failed_steps.is_empty() {
                "ok"
            } else {
                "FAILED"
            }
        );
    }
    println!();
}
