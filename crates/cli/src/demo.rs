//! `fab demo`: the whole product on one machine in one command. It starts an embedded router
//! (sled in a temporary directory), two makerspaces running the real node agent with three
//! virtual Marlin printers on pseudo-terminals, and then acts as a designer in Potsdam: uploads
//! the example models, shows each quote with its reasons, orders the prints, follows them with
//! progress bars, and ends with a summary.
//!
//! Nodes slice with PrusaSlicer. Without it the demo says so and uploads the G-code PrusaSlicer
//! made beforehand for the same models (`examples/gcode/`), which the router accepts as
//! pre-sliced designs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fabrouter_api::v1 as pb;
use fabrouter_node::config::{
    DriverConfig, Location, MaterialConfig, Price, PrinterConfig, Technology,
};
use fabrouter_node::slicer::find_on_path;
use fabrouter_node::{NodeConfig, run_agent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use virtual_printer::{PrinterConfig as VpConfig, VirtualPrinter};

use crate::client::{Client, Target};
use crate::jobs::{duration, money};

/// Where the demo's customer is: Potsdam main station. Only a ~1 km cell of it is stored.
const CUSTOMER: (f64, f64) = (52.391, 13.066);

/// Longest the demo waits for all prints (the virtual printers run a thousand times fast).
const PRINT_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the router's data here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use the pre-sliced G-code even when prusa-slicer is installed.
    #[arg(long)]
    pre_sliced: bool,
    /// After the prints, keep the router, nodes and printers running until Ctrl-C, so that a
    /// person can use the web app (its address and tokens are printed).
    #[arg(long)]
    keep_running: bool,
    /// The router's address (default: a free port on 127.0.0.1).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// One example model, its pre-sliced G-code, and what the demo asks for.
struct Model {
    name: &'static str,
    stl: &'static [u8],
    /// PrusaSlicer's G-code for it, gzipped (see examples/gcode/README.md).
    gcode_gz: &'static [u8],
    material: &'static str,
    why: &'static str,
}

const MODELS: &[Model] = &[
    Model {
        name: "cube-20mm",
        stl: include_bytes!("../../../examples/models/cube-20mm.stl"),
        gcode_gz: include_bytes!("../../../examples/gcode/cube-20mm.gcode.gz"),
        material: "PLA",
        why: "any printer can take it: the nearest should",
    },
    Model {
        name: "ring-40mm",
        stl: include_bytes!("../../../examples/models/ring-40mm.stl"),
        gcode_gz: include_bytes!("../../../examples/gcode/ring-40mm.gcode.gz"),
        material: "PETG",
        why: "in PETG, which one makerspace has loaded",
    },
    Model {
        name: "plate-340mm",
        stl: include_bytes!("../../../examples/models/plate-340mm.stl"),
        gcode_gz: include_bytes!("../../../examples/gcode/plate-340mm.gcode.gz"),
        material: "PLA",
        why: "340 mm long: only a large bed fits it",
    },
];

/// A demo printer: (node, id, makerspace, location, bed, materials, price per h/g/setup).
struct DemoPrinter {
    node: &'static str,
    id: &'static str,
    makerspace: &'static str,
    at: (f64, f64),
    bed_mm: [f64; 3],
    materials: &'static [(&'static str, &'static str)],
    price: (f64, f64, f64),
}

const PRINTERS: &[DemoPrinter] = &[
    DemoPrinter {
        node: "potsdam-makerspace",
        id: "mk3s",
        makerspace: "Makerspace Potsdam",
        at: (52.4009, 13.0452),
        bed_mm: [250.0, 210.0, 210.0],
        materials: &[("PLA", "white")],
        price: (2.0, 0.05, 3.0),
    },
    DemoPrinter {
        node: "berlin-fablab",
        id: "mini",
        makerspace: "FabLab Berlin",
        at: (52.5200, 13.4050),
        bed_mm: [180.0, 180.0, 180.0],
        materials: &[("PLA", "black"), ("PETG", "blue")],
        price: (1.5, 0.04, 2.0),
    },
    DemoPrinter {
        node: "berlin-fablab",
        id: "xl",
        makerspace: "FabLab Berlin",
        at: (52.5200, 13.4050),
        bed_mm: [360.0, 360.0, 360.0],
        materials: &[("PLA", "grey")],
        price: (3.0, 0.06, 5.0),
    },
];

struct Order {
    model: &'static Model,
    job: String,
    option: pb::QuoteOption,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    let tmp;
    let dir: PathBuf = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let slicer = find_on_path("prusa-slicer");
    let pre_sliced = args.pre_sliced || slicer.is_none();
    println!(
        "fabrouter demo: one router, two makerspaces with three virtual printers, and you in Potsdam.\n"
    );
    if slicer.is_none() {
        println!(
            "prusa-slicer is not installed (Debian: apt-get install prusa-slicer), so the nodes cannot\n\
             slice models. The demo uploads G-code that PrusaSlicer made beforehand for the same models\n\
             instead (examples/gcode/, labelled there); the router checks it against each printer.\n"
        );
    } else if pre_sliced {
        println!("--pre-sliced: uploading G-code PrusaSlicer made beforehand (examples/gcode/).\n");
    }

    // The router, on loopback with an OS-chosen port.
    let mut config = fabrouter_server::config::Config::embedded(&dir.join("router"));
    config.network.lease_s = 5.0;
    if let Some(addr) = args.listen {
        config.listen = addr;
    }
    let (stop_router, router_stopped) = oneshot::channel::<()>();
    let running = fabrouter_server::start(config, async {
        let _ = router_stopped.await;
    })
    .await
    .context("starting the embedded router")?;
    let server = format!("http://{}", running.addr);
    let admin_token = std::fs::read_to_string(dir.join("router").join("admin.token"))
        .context("reading the router's admin token")?;
    let admin = Client::connect(&Target {
        server: server.clone(),
        token: Some(admin_token.trim().to_string()),
        ca_cert: None,
    })
    .await?;
    println!("router     {server} (data in {})", dir.display());
    println!("web app    {server}/ (sign in with a token)");

    // The makerspaces: virtual printers on ptys, and one node agent per makerspace.
    let mut printers = Vec::new();
    let mut nodes: Vec<(NodeConfig, oneshot::Sender<()>, oneshot::Receiver<()>)> = Vec::new();
    for p in PRINTERS {
        let vp =
            VirtualPrinter::spawn_pty(VpConfig::fast()).context("starting a virtual printer")?;
        let port = vp
            .slave_path()
            .and_then(Path::to_str)
            .context("the virtual printer has no pty path")?
            .to_string();
        printers.push(vp);
        if !nodes.iter().any(|(n, _, _)| n.node_id == p.node) {
            let secret = admin
                .admin()
                .create_node(pb::CreateNodeRequest {
                    node_id: p.node.into(),
                    label: p.makerspace.into(),
                })
                .await?
                .into_inner()
                .secret;
            let (tx, rx) = oneshot::channel();
            nodes.push((
                NodeConfig {
                    router: server.clone(),
                    node_id: p.node.into(),
                    secret,
                    state_dir: dir.join(p.node),
                    slicer: "prusa-slicer".into(),
                    slicer_timeout: Duration::from_secs(300),
                    reconnect_max: Duration::from_secs(2),
                    printers: Vec::new(),
                },
                tx,
                rx,
            ));
        }
        let node = nodes
            .iter_mut()
            .find(|(n, _, _)| n.node_id == p.node)
            .map(|(n, _, _)| n)
            .context("node")?;
        node.printers.push(PrinterConfig {
            id: p.id.into(),
            driver: DriverConfig::Serial {
                port,
                baud: 250_000,
                detect_timeout: Duration::from_secs(5),
            },
            offline_grace: Duration::from_secs(60),
            profile: "prusaslicer-b".into(),
            slicer_config: None,
            slicer_profile: None,
            technology: Technology::Fdm,
            build_volume_mm: p.bed_mm,
            nozzle_mm: 0.4,
            materials: p
                .materials
                .iter()
                .map(|(kind, colour)| MaterialConfig {
                    kind: (*kind).into(),
                    colour: (*colour).into(),
                    hotend_c: None,
                    bed_c: None,
                })
                .collect(),
            location: Location {
                lat: p.at.0,
                lon: p.at.1,
            },
            price: Price {
                currency: "EUR".into(),
                per_hour: p.price.0,
                per_gram: p.price.1,
                setup_fee: p.price.2,
            },
            makerspace: p.makerspace.into(),
            firmware_flavor: "marlin2".into(),
            max_hotend_c: 270.0,
            max_bed_c: 120.0,
        });
    }
    let mut agents = Vec::new();
    let mut stops = Vec::new();
    for (config, tx, rx) in nodes {
        let id = config.node_id.clone();
        println!(
            "node       {id}: {}",
            config
                .printers
                .iter()
                .map(|p| format!(
                    "{} ({:.0}x{:.0}x{:.0} mm, {})",
                    p.id,
                    p.build_volume_mm[0],
                    p.build_volume_mm[1],
                    p.build_volume_mm[2],
                    p.materials
                        .iter()
                        .map(|m| format!("{} {}", m.colour, m.kind))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        agents.push(tokio::spawn(run_agent(config, async {
            let _ = rx.await;
        })));
        stops.push(tx);
    }
    wait_for_printers(&admin, PRINTERS.len()).await?;

    // The designer: a token of their own, as a marketplace or the fab CLI would hold.
    let designer_secret = admin
        .admin()
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Designer as i32,
            label: "demo designer".into(),
        })
        .await?
        .into_inner()
        .secret;
    let designer = Client::connect(&Target {
        server: server.clone(),
        token: Some(designer_secret.clone()),
        ca_cert: None,
    })
    .await?;
    println!(
        "designer   in Potsdam ({:.3}, {:.3}); the router keeps only a ~1 km cell of it\n",
        CUSTOMER.0, CUSTOMER.1
    );

    let mut orders = Vec::new();
    for model in MODELS {
        orders.push(order(&designer, model, pre_sliced).await?);
    }

    let ended = follow(&designer, &orders).await?;
    summary(&orders, &ended);

    if args.keep_running {
        println!(
            "\nThe router keeps running: open {server}/ in a browser and sign in with\n  \
             designer token  {designer_secret}\n  admin token     {}\n\
             (an admin can make operator tokens on the Admin page). Ctrl-C stops everything.",
            admin_token.trim()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        println!("stopping");
    }

    for tx in stops {
        let _ = tx.send(());
    }
    for a in agents {
        match a.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("a node agent stopped with an error: {e:#}"),
            Err(e) => eprintln!("a node agent failed: {e}"),
        }
    }
    let _ = stop_router.send(());
    running.wait().await?;
    drop(printers);
    let completed = ended
        .iter()
        .filter(|j| j.state == pb::JobState::Completed as i32)
        .count();
    println!(
        "\n{completed} of {} prints completed in {:.1} s.",
        orders.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if completed == orders.len() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn wait_for_printers(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .nodes()
            .list_printers(pb::ListPrintersRequest::default())
            .await?
            .into_inner();
        let idle = r
            .printers
            .iter()
            .filter(|p| p.state == pb::PrinterState::Idle as i32)
            .count();
        if idle >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {idle} of {n} printers came online within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn upload(
    client: &Client,
    file_name: String,
    bytes: Vec<u8>,
    format: pb::DesignFormat,
) -> anyhow::Result<pb::Design> {
    let mut msgs = vec![pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Metadata(
            pb::UploadMetadata {
                file_name,
                declared_size_bytes: bytes.len() as u64,
                sha256: String::new(),
                format: format as i32,
            },
        )),
    }];
    msgs.extend(
        bytes
            .chunks(crate::UPLOAD_CHUNK_BYTES)
            .map(|c| pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Chunk(c.to_vec())),
            }),
    );
    Ok(client
        .designs()
        .upload_design(tokio_stream::iter(msgs))
        .await?
        .into_inner())
}

fn gunzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .context("unpacking the shipped G-code")?;
    Ok(out)
}

/// Uploads one model, shows its quote, and orders it.
async fn order(client: &Client, model: &'static Model, pre_sliced: bool) -> anyhow::Result<Order> {
    let design = if pre_sliced {
        let d = upload(
            client,
            format!("{}.gcode", model.name),
            gunzip(model.gcode_gz)?,
            pb::DesignFormat::Gcode,
        )
        .await?;
        println!(
            "{} — {}\n  uploaded pre-sliced G-code (PrusaSlicer, examples/gcode/{}.gcode.gz) as {}",
            model.name, model.why, model.name, d.name
        );
        d
    } else {
        let d = upload(
            client,
            format!("{}.stl", model.name),
            model.stl.to_vec(),
            pb::DesignFormat::Stl,
        )
        .await?;
        let r = d.mesh_report.clone().unwrap_or_default();
        let e = r.extent_mm.unwrap_or_default();
        println!(
            "{} — {}\n  uploaded {} as {}: {}, {} triangles, {:.0} x {:.0} x {:.1} mm",
            model.name,
            model.why,
            d.file_name,
            d.name,
            crate::output::verdict_word(r.verdict).replace('_', " "),
            r.triangles,
            e.x,
            e.y,
            e.z
        );
        d
    };
    let spec = pb::JobSpec {
        design: design.name.clone(),
        technology: pb::Technology::Fdm as i32,
        material: Some(pb::Material {
            kind: model.material.into(),
            colour: String::new(),
        }),
        nozzle_mm: 0.0,
        customer_location: Some(pb::GeoPoint {
            lat_deg: CUSTOMER.0,
            lon_deg: CUSTOMER.1,
        }),
        max_distance_km: 0.0,
        quantity: 1,
    };
    let quote = client
        .jobs()
        .quote_job(pb::QuoteJobRequest {
            spec: Some(spec.clone()),
            max_options: 3,
        })
        .await?
        .into_inner();
    if quote.options.is_empty() {
        for r in &quote.rejections {
            println!("  {} [{}]: {}", short(&r.printer), r.code, r.message);
        }
        bail!("no printer can take {}", model.name);
    }
    for (i, o) in quote.options.iter().enumerate() {
        let e = o.estimate.clone().unwrap_or_default();
        println!(
            "  {}. {} at {}: {:.1} km, {}, {} and {:.1} g of {}",
            i + 1,
            short(&o.printer),
            o.makerspace,
            o.distance_km,
            money(&o.price),
            duration(e.print_time_s),
            e.filament_g,
            model.material
        );
        if i == 0 {
            for reason in &o.reasons {
                println!("     why: {reason}");
            }
        }
    }
    for r in quote
        .rejections
        .iter()
        .filter(|r| !quote.options.iter().any(|o| o.printer == r.printer))
    {
        println!("     not {}: {}", short(&r.printer), r.message);
    }
    let submitted = client
        .jobs()
        .submit_job(pb::SubmitJobRequest {
            spec: Some(spec),
            printer: String::new(),
            idempotency_key: format!("demo-{}-{}", model.name, design.name),
        })
        .await?
        .into_inner();
    let job = submitted
        .jobs
        .into_iter()
        .next()
        .context("the router made no job")?;
    let option = job.placement.clone().unwrap_or_default();
    println!("  ordered {} -> {}\n", job.name, short(&option.printer));
    Ok(Order {
        model,
        job: job.name,
        option,
    })
}

/// `nodes/berlin-fablab/printers/xl` -> `berlin-fablab/xl`.
fn short(printer: &str) -> String {
    printer
        .strip_prefix("nodes/")
        .unwrap_or(printer)
        .replace("/printers/", "/")
}

/// Follows every job with a progress bar until all have ended; returns their final state.
async fn follow(client: &Client, orders: &[Order]) -> anyhow::Result<Vec<pb::Job>> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut tasks = Vec::new();
    for o in orders {
        let bar = bars.add(ProgressBar::new(1000));
        bar.set_style(style.clone());
        bar.set_prefix(o.model.name);
        let mut jobs = client.jobs();
        let name = o.job.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = jobs
                .watch_job(pb::WatchJobRequest {
                    name: name.clone(),
                    from_sequence: 0,
                })
                .await?
                .into_inner();
            while let Some(e) = stream.next().await {
                let e = e?;
                bar.set_position((e.progress_fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                let state = pb::JobState::try_from(e.state)
                    .unwrap_or(pb::JobState::Unspecified)
                    .as_str_name()
                    .trim_start_matches("JOB_STATE_")
                    .to_ascii_lowercase();
                let on = if e.printer.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", short(&e.printer))
                };
                bar.set_message(format!("{state}{on} {}", e.message));
            }
            bar.finish();
            let job = jobs.get_job(pb::GetJobRequest { name }).await?.into_inner();
            Ok::<pb::Job, anyhow::Error>(job)
        }));
    }
    let all = async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await??);
        }
        Ok::<_, anyhow::Error>(out)
    };
    tokio::time::timeout(PRINT_DEADLINE, all)
        .await
        .map_err(|_| anyhow::anyhow!("the prints did not end within {PRINT_DEADLINE:?}"))?
}

fn summary(orders: &[Order], ended: &[pb::Job]) {
    println!(
        "\n{:<12} {:<22} {:>8} {:>9} {:>9} {:>9}  result",
        "model", "printer", "distance", "time", "filament", "price"
    );
    for (o, j) in orders.iter().zip(ended) {
        let placement = j.placement.clone().unwrap_or_else(|| o.option.clone());
        let e = placement.estimate.clone().unwrap_or_default();
        let state = pb::JobState::try_from(j.state)
            .unwrap_or(pb::JobState::Unspecified)
            .as_str_name()
            .trim_start_matches("JOB_STATE_")
            .to_ascii_lowercase();
        let result = if j.failure_reason.is_empty() {
            state
        } else {
            format!("{state}: {}", j.failure_reason)
        };
        println!(
            "{:<12} {:<22} {:>5.1} km {:>9} {:>7.1} g {:>9}  {}",
            o.model.name,
            short(&j.printer),
            placement.distance_km,
            duration(e.print_time_s),
            e.filament_g,
            money(&placement.price),
            result
        );
    }
    println!(
        "(time and filament are the router's estimates at the chosen printer; the virtual printers run a thousand times faster)"
    );
}
