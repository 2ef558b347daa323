//! `ironlb plan PATH... [-o text|json]`: the allocation the controller would make for the
//! Services in a set of manifests, offline.
//!
//! Services that already carry `status.loadBalancer.ingress` are existing assignments and are
//! processed first, in input order (as the controller does on startup, so they keep their
//! addresses); then the others, in input order. Services that are not `type: LoadBalancer`,
//! or have a `spec.loadBalancerClass`, are left out. The output lists the remaining Services
//! in input order. Exit codes as `config check`: 1 with every configuration problem on stderr,
//! 2 when the input cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use ironlb_alloc::{Allocator, Pool};
use ironlb_api::manifest::{load_paths, ManifestSet};
use ironlb_api::service::{service_request, ServiceRequest};
use k8s_openapi::api::core::v1::Service;
use serde::Serialize;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub(crate) enum Output {
    /// A readable table.
    #[default]
    Text,
    /// A JSON array, one object per Service in input order.
    Json,
}

/// Arguments of `ironlb plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files, directories (every *.yaml / *.yml inside) or `-` for standard input: metallb.io
    /// objects, Namespaces and v1 Services.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One line of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Entry {
    service: String,
    ips: Vec<String>,
    pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let set = match load_paths(&args.paths) {
        Ok(set) => set,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(2));
        }
    };
    let pools = match config_pools(&set) {
        Ok(pools) => pools,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let entries = plan(pools, &set.services);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Text => print!("{}", table(&entries)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The validated pools of the manifests, or every configuration problem.
fn config_pools(set: &ManifestSet) -> Result<Vec<Pool>, Vec<String>> {
    let inputs = set.config_inputs();
    ironlb_api::config::Config::parse(&inputs)
        .map(|config| config.pools().values().cloned().collect())
        .map_err(|errors| errors.errors().iter().map(ToString::to_string).collect())
}

/// The Service's `namespace/name` as well as it can be read.
fn display_name(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or("default"),
        service.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether the default controller handles the Service: `type: LoadBalancer` and no
/// `loadBalancerClass`.
fn handled(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer")
            && spec.load_balancer_class.as_deref().unwrap_or("").is_empty()
    })
}

/// Allocates for every handled Service: existing assignments first, then the others, both in
/// input order. Returns one entry per handled Service, in input order.
fn plan(pools: Vec<Pool>, services: &[Service]) -> Vec<Entry> {
    let mut allocator = Allocator::new();
    allocator.set_pools(pools);
    let handled: Vec<&Service> = services.iter().filter(|service| handled(service)).collect();
    let requests: Vec<Result<ServiceRequest, String>> = handled
        .iter()
        .map(|service| service_request(service).map_err(|error| error.to_string()))
        .collect();
    for request in requests.iter().flatten() {
        for annotation in &request.deprecated_annotations {
            eprintln!(
                "warning: Service/{}: uses deprecated annotation {annotation}",
                request.request.service
            );
        }
    }
    let existing = |index: &usize| {
        requests[*index]
            .as_ref()
            .is_ok_and(|request| !request.current_ips.is_empty())
    };
    let (mut order, rest): (Vec<usize>, Vec<usize>) = (0..handled.len()).partition(existing);
    order.extend(rest);

    let mut entries: Vec<Option<Entry>> = vec![None; handled.len()];
    for index in order {
        let entry = match &requests[index] {
            Err(error) => Entry {
                service: display_name(handled[index]),
                ips: Vec::new(),
                pool: None,
                error: Some(error.clone()),
            },
            Ok(request) => {
                let converged = allocator.converge(&request.request, &request.current_ips);
                let service = request.request.service.to_string();
                match converged.result {
                    Ok(assignment) => Entry {
                        service,
                        ips: assignment.ips.iter().map(ToString::to_string).collect(),
                        pool: Some(assignment.pool.to_string()),
                        error: None,
                    },
                    Err(error) => Entry {
                        service,
                        ips: Vec::new(),
                        pool: None,
                        error: Some(error.to_string()),
                    },
                }
            }
        };
        entries[index] = Some(entry);
    }
    entries.into_iter().flatten().collect()
}

/// A readable table: service, addresses, pool, and the error if any.
fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 3]> = entries
        .iter()
        .map(|entry| {
            [
                entry.service.clone(),
                if entry.ips.is_empty() {
                    "-".to_owned()
                } else {
                    entry.ips.join(",")
                },
                entry.pool.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let header = ["SERVICE".to_owned(), "IPS".to_owned(), "POOL".to_owned()];
    let mut widths = [0usize; 3];
    for row in rows.iter().chain(std::iter::once(&header)) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String; 3], note: &str| {
        let text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {note}",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header, "ERROR");
    for (row, entry) in rows.iter().zip(entries) {
        line(&mut out, row, entry.error.as_deref().unwrap_or(""));
    }
    out
}
