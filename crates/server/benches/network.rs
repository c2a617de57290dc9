//! Printer-network figures over real gRPC on loopback with a real sled directory:
//! QuoteJob latency with 10,000 registered printers (p50/p99), durable SubmitJob throughput
//! and latency next to an empty authenticated call (WhoAmI) as the loopback reference, how
//! many submits shared each store flush, and resident memory with 10,000 printers and 100,000
//! jobs. The machine's load average is printed with the figures: they are only comparable
//! between runs on an otherwise idle machine.
//!
//! Last, durable SubmitJob on sled and on PostgreSQL (a throwaway cluster, fsync on) in the same
//! run, with the ratio.
//!
//! `cargo bench -p fabrouter-server --bench network [-- --printers N --jobs N --clients N --connections N --store-jobs N]`
//! (the clients share one HTTP/2 connection unless `--connections` spreads them)

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_testkit::router::{
    Authed, Bearer, Router, SimNode, connect, printer, spec as job_spec,
};

/// The allocator fabd runs with, so the figures are fabd's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The embedded router, with leases long enough that the benchmark's one idle node never
/// expires.
async fn bench_router(dir: &std::path::Path) -> Router {
    Router::start_with(dir, |config| config.network.lease_s = 3600.0).await
}

/// CPU seconds this process used so far (user + system, all threads).
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Busy CPU seconds of the whole machine so far (every process, kernel threads included: a
/// file system's journal commits for our fsyncs run there).
fn machine_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let cpu = s.lines().next()?.split_whitespace().skip(1);
            let v: Vec<f64> = cpu.filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
            let busy = v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4)?;
            Some(busy / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn dir_mb(dir: &std::path::Path) -> f64 {
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => bytes += m.len(),
                Err(_) => {}
            }
        }
    }
    bytes as f64 / (1024.0 * 1024.0)
}

/// A deterministic pseudo-random sequence (no dependency needed for a benchmark's layout).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n_printers = arg("--printers", 10_000);
    let n_jobs = arg("--jobs", 100_000);
    let clients = arg("--clients", 32);
    let connections = arg("--connections", 1).max(1);
    let dir = tempfile::tempdir()?;
    let r = bench_router(dir.path()).await;
    let admin = r.admin();
    let designer = r.designer().await;
    let rss_start = rss_mb();

    // Printers: 100 nodes, spread over central Europe.
    let mut rng = Lcg(7);
    let per_node = n_printers.div_ceil(100);
    let mut nodes = Vec::new();
    let t = Instant::now();
    for n in 0..100 {
        let id = format!("node-{n}");
        let creds = r.node_credentials(&id).await;
        let (lat, lon) = (46.0 + rng.next() * 8.0, 5.0 + rng.next() * 12.0);
        let printers = (0..per_node)
            .map(|i| pb::PrinterSpec {
                build_x_mm: 180.0 + 100.0 * rng.next(),
                build_y_mm: 180.0 + 100.0 * rng.next(),
                build_z_mm: 180.0 + 100.0 * rng.next(),
                materials: vec![pb::Material {
                    kind: if rng.next() < 0.7 { "PLA" } else { "PETG" }.into(),
                    colour: "black".into(),
                }],
                location: Some(pb::GeoPoint {
                    lat_deg: lat + rng.next() * 0.2,
                    lon_deg: lon + rng.next() * 0.2,
                }),
                price: Some(pb::PriceModel {
                    currency: "EUR".into(),
                    per_hour_minor: 150 + (rng.next() * 100.0) as i64,
                    per_gram_minor: 5,
                    setup_fee_minor: 300,
                }),
                makerspace: format!("space {n}"),
                ..printer(&format!("p{i}"), (lat, lon), pb::Technology::Fdm, 0.0)
            })
            .collect();
        let mut node = SimNode::connect(&r, &creds, &id, printers, vec![]).await;
        // Drain assignments so the router's channel to the node never grows.
        node.drain();
        nodes.push(node);
    }
    let registered = t.elapsed();
    let rss_printers = rss_mb();

    let design = r.cube(&designer, 20.0).await;
    let spec =
        move |rng: &mut Lcg| job_spec(&design, (46.0 + rng.next() * 8.0, 5.0 + rng.next() * 12.0));

    // Quote latency, end to end over gRPC (the estimate is cached after the first call).
    let mut jobs = r.jobs(&designer);
    let mut lat = Vec::new();
    for i in 0..1200 {
        let req = pb::QuoteJobRequest {
            spec: Some(spec(&mut rng)),
            max_options: 3,
        };
        let t = Instant::now();
        jobs.quote_job(req).await?;
        if i >= 200 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);

    // Reference: the cheapest authenticated call the server has, at the same concurrency.
    let window = Duration::from_secs(5);
    let whoami_cpu = cpu_s();
    let whoami_rate = {
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = Instant::now() + window;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut c = admin.clone();
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if c.who_am_i(pb::WhoAmIRequest {}).await.is_ok() {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        count.load(std::sync::atomic::Ordering::Relaxed) as f64 / window.as_secs_f64()
    };
    let whoami_cpu_us = (cpu_s() - whoami_cpu) * 1e6 / (whoami_rate * window.as_secs_f64());

    // Durable submissions: every acknowledged job is synced to disk.
    let submitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (flushes_before, tickets_before) = r.running().network.sync_figures();
    let submit_cpu = cpu_s();
    let machine_cpu = machine_cpu_s();
    let t = Instant::now();
    let mut tasks = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..connections {
        let ch = connect(&format!("http://{}", r.addr())).await;
        let c: JobServiceClient<Authed> =
            JobServiceClient::with_interceptor(ch, Bearer(designer.clone()));
        conns.push(c);
    }
    for w in 0..clients {
        let mut c = conns[w % connections].clone();
        let submitted = submitted.clone();
        let spec = spec.clone();
        let per = n_jobs / clients + usize::from(w < n_jobs % clients);
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(1000 + w as u64);
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let req = pb::SubmitJobRequest {
                    spec: Some(spec(&mut rng)),
                    printer: String::new(),
                    idempotency_key: format!("w{w}-{i}"),
                };
                let t = Instant::now();
                if c.submit_job(req).await.is_ok() {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                    submitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut submit_lat = Vec::new();
    for task in tasks {
        submit_lat.extend(task.await?);
    }
    let took = t.elapsed().as_secs_f64();
    let submit_cpu = cpu_s() - submit_cpu;
    let machine_cpu = machine_cpu_s() - machine_cpu;
    submit_lat.sort_by(f64::total_cmp);
    let (flushes_after, tickets_after) = r.running().network.sync_figures();
    let flushes = flushes_after - flushes_before;
    let batch = (tickets_after - tickets_before) as f64 / flushes.max(1) as f64;
    let n = submitted.load(std::sync::atomic::Ordering::Relaxed);
    let submit_rate = n as f64 / took;
    let rss_jobs = rss_mb();
    let store_mb = dir_mb(dir.path());
    let load = load_average();

    println!("printer network over gRPC on loopback, sled on disk, 2 worker threads");
    println!(
        "  registered {} printers on 100 nodes in {:.2} s",
        100 * per_node,
        registered.as_secs_f64()
    );
    println!(
        "  QuoteJob with {} printers: p50 {:.0} us, p99 {:.0} us, max {:.0} us (1000 quotes)",
        100 * per_node,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!(
        "  reference WhoAmI ({clients} clients): {whoami_rate:.0} calls/s, {whoami_cpu_us:.0} us CPU per call (server and client)"
    );
    println!(
        "  durable SubmitJob ({clients} clients): {n} jobs in {took:.1} s = {submit_rate:.0} jobs/s ({:.2} of the WhoAmI rate)",
        submit_rate / whoami_rate
    );
    println!(
        "    latency p50 {:.0} us, p99 {:.0} us; CPU per submit {:.0} us in this process (server and client), {:.0} us machine-wide; {flushes} store flushes, {batch:.1} submits per flush",
        pct(&submit_lat, 0.5),
        pct(&submit_lat, 0.99),
        submit_cpu * 1e6 / n.max(1) as f64,
        machine_cpu * 1e6 / n.max(1) as f64,
    );
    println!(
        "  resident memory (router and benchmark clients in one process): start {rss_start:.0} MB, with printers {rss_printers:.0} MB, with {n} jobs {rss_jobs:.0} MB ({:.2} KB per job); store on disk {store_mb:.0} MB",
        (rss_jobs - rss_printers) * 1024.0 / n.max(1) as f64
    );
    drop(nodes);
    r.stop().await;

    // A restart with every job still active: the store's check for submissions that never
    // committed and the registry's reload of the jobs.
    let t = Instant::now();
    let r = bench_router(dir.path()).await;
    println!(
        "  restart with {n} active jobs: serving again after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    println!("  load average at the end (1, 5, 15 min): {load}");
    r.stop().await;

    store_arms(clients, arg("--store-jobs", 10_000)).await;
    Ok(())
}

/// Durable SubmitJob on sled and on PostgreSQL in the same run, on the same router setup (one
/// node with 10 printers, `clients` clients on one connection, `n` jobs), so the ratio is
/// measured rather than compared across runs. PostgreSQL is a throwaway cluster on this
/// machine with fsync on (a commit waits for its WAL flush, as sled's flush does).
async fn store_arms(clients: usize, n: usize) {
    println!("durable SubmitJob by store ({clients} clients, {n} jobs each, 10 printers)");
    let sled_dir = tempfile::tempdir().expect("temporary directory");
    let sled = bench_router(sled_dir.path()).await;
    let (sled_rate, sled_p50, sled_p99) = submit_burst(&sled, clients, n).await;
    sled.stop().await;
    println!("  sled:       {sled_rate:.0} jobs/s, p50 {sled_p50:.0} us, p99 {sled_p99:.0} us");
    let cluster = match fabrouter_testkit::pg::PgCluster::start_with(true) {
        Ok(c) => c,
        Err(e) => {
            println!("  PostgreSQL: not measured ({e})");
            return;
        }
    };
    let url = cluster.database().expect("a database");
    let store: Arc<dyn fabrouter_store::Store> =
        Arc::new(fabrouter_store::PgStore::connect(&url).expect("the PostgreSQL store"));
    let pg_dir = tempfile::tempdir().expect("temporary directory");
    let mut config = fabrouter_server::Config::embedded(pg_dir.path());
    config.network.lease_s = 3600.0;
    let pg = Router::start_with_config_and_store(pg_dir.path(), config, store).await;
    let (pg_rate, pg_p50, pg_p99) = submit_burst(&pg, clients, n).await;
    pg.stop().await;
    println!(
        "  PostgreSQL: {pg_rate:.0} jobs/s, p50 {pg_p50:.0} us, p99 {pg_p99:.0} us ({:.2} of sled's rate; one fabd, unix socket, fsync on)",
        pg_rate / sled_rate
    );
    println!(
        "  load average at the end (1, 5, 15 min): {}",
        load_average()
    );
}

/// `n` durable submits from `clients` clients: (jobs/s, p50 us, p99 us).
async fn submit_burst(r: &Router, clients: usize, n: usize) -> (f64, f64, f64) {
    let designer = r.designer().await;
    let creds = r.node_credentials("arm").await;
    let printers = (0..10)
        .map(|i| {
            printer(
                &format!("p{i}"),
                (52.0 + i as f64 * 0.1, 13.0),
                pb::Technology::Fdm,
                250.0,
            )
        })
        .collect();
    let mut node = SimNode::connect(r, &creds, "arm", printers, vec![]).await;
    node.drain();
    let design = r.cube(&designer, 20.0).await;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let mut c = r.jobs(&designer);
        let design = design.clone();
        let per = n / clients + usize::from(w < n % clients);
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(2000 + w as u64);
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let req = pb::SubmitJobRequest {
                    spec: Some(job_spec(&design, (52.0 + rng.next(), 13.0 + rng.next()))),
                    printer: String::new(),
                    idempotency_key: format!("arm-w{w}-{i}"),
                };
                let t = Instant::now();
                if c.submit_job(req).await.is_ok() {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.expect("a client task"));
    }
    let took = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    drop(node);
    (lat.len() as f64 / took, pct(&lat, 0.5), pct(&lat, 0.99))
}
