//! `ironlb demo`: the main job on one machine, in network namespaces (root). The logic is
//! `ironlb_lab::demo`; this module turns flags into [`ironlb_lab::demo::DemoOptions`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};
use ironlb_lab::demo::{self, DemoOptions, Scenario};

/// Flags of `ironlb demo`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// Node namespaces (each runs a speaker and a backend).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=20))]
    nodes: u8,
    /// Which failover to show: layer 2, BGP, or both one after the other.
    #[arg(long, value_enum, default_value = "l2")]
    scenario: ScenarioArg,
    /// Leave the (last) lab running and print how to explore and remove it.
    #[arg(long)]
    keep: bool,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the failover (the client's answers over time) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Prefix of every network namespace the demo creates (the BGP lab adds `bgp`).
    #[arg(long, default_value = "ilb")]
    prefix: String,
    /// Remove the labs left by `--keep` (or by a crash) with this prefix, then exit.
    #[arg(long)]
    cleanup: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioArg {
    L2,
    Bgp,
    All,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.cleanup {
        let mut removed = ironlb_lab::topology::cleanup_prefix(&args.prefix);
        removed.extend(ironlb_lab::topology::cleanup_prefix(&format!(
            "{}bgp",
            args.prefix
        )));
        println!(
            "removed {} namespaces: {}",
            removed.len(),
            removed.join(" ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let scenarios = match args.scenario {
        ScenarioArg::L2 => vec![Scenario::L2],
        ScenarioArg::Bgp => vec![Scenario::Bgp],
        ScenarioArg::All => vec![Scenario::L2, Scenario::Bgp],
    };
    if let Err(reason) = demo::preflight(&scenarios) {
        eprintln!("ironlb demo: {reason}");
        return Ok(ExitCode::from(1));
    }
    let binary = std::env::current_exe().context("cannot find the ironlb binary")?;
    let options = DemoOptions {
        nodes: usize::from(args.nodes),
        scenarios,
        keep: args.keep,
        json: args.json,
        plot: args.plot,
        prefix: args.prefix,
        binary,
    };
    let report = demo::run(&options)?;
    Ok(if report.ok {
        println!("demo passed");
        ExitCode::SUCCESS
    } else {
        println!("demo FAILED (see the steps above)");
        ExitCode::from(1)
    })
}
