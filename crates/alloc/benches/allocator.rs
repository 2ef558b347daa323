//! `cargo bench -p ironlb-alloc`: the allocator's cost at 1k, 10k, 100k and 1M services spread
//! over 50 pools (25 IPv4 /16s, 25 IPv6 /64s; one service in ten shares its address with a
//! partner under a sharing key).
//!
//! Prints, per size: the median time of one automatic allocation into the filled allocator
//! (criterion's `allocate/N`, plus our own median over individually timed allocations), the
//! time to rebuild the allocator from that many existing assignments (a controller restart:
//! `set_pools` then `assign` for every service), and the allocator's heap bytes per service
//! (measured with a counting global allocator).
//!
//! Set `IRONLB_BENCH_MAX=100000` to skip the 1M size.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system
// allocator and adds atomics, and exists only in this benchmark binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ironlb_alloc::{
    parse_address_entry, Allocator, Family, Pool, PoolName, Port, Request, ServiceKey,
};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const POOLS: usize = 50;

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux). The machine the
/// benchmark runs on is shared, so wall-clock times include waiting for a CPU; CPU time is the
/// allocator's own cost. `None` where the file does not exist.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn pools() -> Vec<Pool> {
    (0..POOLS)
        .map(|index| {
            let entry = if index.is_multiple_of(2) {
                format!("10.{}.0.0/16", index / 2)
            } else {
                format!("fd00:{:x}::/64", index / 2)
            };
            Pool::new(
                PoolName(format!("pool-{index:02}")),
                parse_address_entry(&entry).expect("valid CIDR"),
                true,
                index.is_multiple_of(4),
                None,
            )
            .expect("valid pool")
        })
        .collect()
}

/// Service number `index`: half IPv4, half IPv6; services `10k` and `10k+1` share a key.
fn request(index: usize) -> Request {
    let mut request = Request::new(ServiceKey::new(
        format!("ns-{}", index % 97),
        format!("svc-{index:07}"),
    ));
    let family = if (index / 2).is_multiple_of(2) {
        Family::V4
    } else {
        Family::V6
    };
    request.cluster_families = vec![family];
    request.primary_family = family;
    if index % 10 < 2 {
        request.sharing_key = format!("share-{}", index / 10);
        request.ports = vec![Port::tcp(if index.is_multiple_of(10) { 80 } else { 443 })];
    } else {
        request.ports = vec![Port::tcp(80)];
    }
    request
}

/// Median of individually timed allocations of fresh services (each released afterwards, so
/// the allocator stays at `services`).
fn median_allocation(allocator: &mut Allocator, services: usize, samples: usize) -> Duration {
    let mut times = Vec::with_capacity(samples);
    for sample in 0..samples {
        let request = request(services + 1 + sample);
        let start = Instant::now();
        let got = allocator.allocate(&request);
        times.push(start.elapsed());
        black_box(got.expect("capacity suffices"));
        allocator.release(&request.service);
    }
    times.sort();
    times[times.len() / 2]
}

fn sizes() -> Vec<usize> {
    let max: usize = std::env::var("IRONLB_BENCH_MAX")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&size| size <= max)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut summary = Vec::new();
    let mut group = c.benchmark_group("allocate");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for services in sizes() {
        // Memory: live heap bytes of the allocator, per service.
        // The pools' own structures are per configuration, not per service: the baseline is
        // an allocator holding the pools and no service.
        let mut allocator = Allocator::new();
        allocator.set_pools(pools());
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        for index in 0..services {
            allocator
                .allocate(&request(index))
                .expect("capacity suffices");
        }
        let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
        allocator.check_invariants();

        // Rebuild from existing assignments (a controller restart replaying Service status).
        let existing: Vec<(Request, Vec<IpAddr>)> = (0..services)
            .map(|index| {
                let request = request(index);
                let ips = allocator.ips(&request.service).expect("allocated");
                (request, ips)
            })
            .collect();
        let runs = if services >= 1_000_000 { 1 } else { 3 };
        let mut rebuilds = Vec::new();
        for _ in 0..runs {
            let cpu_start = thread_cpu_time();
            let start = Instant::now();
            let mut rebuilt = Allocator::new();
            rebuilt.set_pools(pools());
            for (request, ips) in &existing {
                rebuilt
                    .assign(request, ips)
                    .expect("existing assignment is valid");
            }
            let wall = start.elapsed();
            let cpu = thread_cpu_time()
                .zip(cpu_start)
                .map(|(end, start)| end.saturating_sub(start));
            rebuilds.push((wall, cpu));
            black_box(&rebuilt);
        }
        drop(existing);
        rebuilds.sort();
        let rebuild = rebuilds[rebuilds.len() / 2];

        // CPU time of a batch of allocate + release cycles, per cycle (reading the CPU clock
        // costs a system call, so it is read once per batch).
        let batch = 20_000;
        let cpu_start = thread_cpu_time();
        for sample in 0..batch {
            let request = request(services + 500_000 + sample);
            black_box(allocator.allocate(&request).expect("capacity suffices"));
            allocator.release(&request.service);
        }
        let cpu_per_allocation = thread_cpu_time()
            .zip(cpu_start)
            .map_or(Duration::ZERO, |(end, start)| end.saturating_sub(start))
            / batch as u32;

        let median = median_allocation(&mut allocator, services, 20_000);
        let mut next = services + 1_000_000;
        group.bench_function(format!("{services}"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let request = request(next);
                    next += 1;
                    let start = Instant::now();
                    let got = allocator.allocate(&request);
                    total += start.elapsed();
                    black_box(got.expect("capacity suffices"));
                    allocator.release(&request.service);
                }
                total
            })
        });
        summary.push((
            services,
            median,
            cpu_per_allocation,
            rebuild,
            bytes as f64 / services as f64,
        ));
    }
    group.finish();

    println!();
    println!("(wall = elapsed time on a shared machine; cpu = this thread's CPU time)");
    println!(
        "services   allocation wall median   alloc+release cpu mean   rebuild wall   rebuild cpu   bytes/service"
    );
    for (services, median, cpu, (rebuild_wall, rebuild_cpu), bytes) in &summary {
        println!(
            "{services:>9}   {:>20.0} ns   {:>19.0} ns   {:>9.1} ms   {:>8.1} ms   {bytes:>13.1}",
            median.as_nanos() as f64,
            cpu.as_nanos() as f64,
            rebuild_wall.as_secs_f64() * 1000.0,
            rebuild_cpu.map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1000.0),
        );
    }
    if let (Some(first), Some(last)) = (summary.first(), summary.last()) {
        println!(
            "allocation cost at {} / at {}: wall median {:.2}x, cpu mean {:.2}x (target <= 2x)",
            last.0,
            first.0,
            last.1.as_nanos() as f64 / first.1.as_nanos() as f64,
            last.2.as_nanos() as f64 / first.2.as_nanos().max(1) as f64,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
