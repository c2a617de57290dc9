//! `fab`: the designer's command line. `fab check` works offline; everything else talks to a
//! router over gRPC (see `client` for how the server and token are found).

mod client;
mod demo;
mod estimate;
mod jobs;
mod output;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use fabrouter_api::v1 as pb;
use fabrouter_mesh as mesh;
use sha2::Digest;

use crate::client::{Client, Target, explain};

/// Bytes per upload message; well under gRPC's default 4 MiB message limit.
pub(crate) const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

#[derive(Parser)]
#[command(
    name = "fab",
    version,
    about = "Check, upload and print 3D models with fabrouter"
)]
struct Cli {
    /// Router address, e.g. http://127.0.0.1:50051.
    #[arg(long, global = true, env = "FAB_SERVER")]
    server: Option<String>,
    /// API token (default: config file, then the local fabd's admin token).
    #[arg(long, global = true, env = "FAB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) for an https:// server with a private CA.
    #[arg(long, global = true, env = "FAB_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an STL file locally (no server needed).
    Check { file: PathBuf },
    /// Estimate print time and filament of an STL file locally (no server needed).
    Estimate {
        file: PathBuf,
        /// A built-in profile (e.g. prusaslicer-b) or a profile TOML file.
        #[arg(long, default_value = "prusaslicer-b")]
        profile: String,
        #[command(flatten)]
        presets: estimate::PresetArgs,
    },
    /// Printer profiles the router knows; with --installed, the PrusaSlicer presets installed
    /// on this machine (no server needed).
    Profiles(estimate::ProfilesArgs),
    /// Upload an STL file (or pre-sliced .gcode) and print its report.
    Upload { file: PathBuf },
    /// Your designs on the router.
    Designs {
        #[command(subcommand)]
        action: DesignsAction,
    },
    /// Quote, order and follow prints.
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// Printers registered with the router.
    Printers,
    /// Administration (admin token required).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Who the router thinks you are.
    Whoami,
    /// Run everything on this machine (router, two makerspaces with virtual printers) and
    /// print the example models as a designer in Potsdam would.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum DesignsAction {
    /// List your designs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one design with its mesh report.
    Get { name: String },
    /// Delete a design (its bytes go too when nothing else uses them).
    Delete { name: String },
    /// Repair a design's mesh into a new design.
    Repair { name: String },
    /// Estimate a design on a printer profile (cached by the router).
    Estimate {
        name: String,
        #[arg(long, default_value = "prusaslicer-b")]
        profile: String,
    },
    /// Download a design's bytes to a file.
    Download {
        name: String,
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Node identities for makerspace agents.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long, value_parser = ["designer", "operator", "marketplace", "admin"])]
        role: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand)]
enum NodeAction {
    /// Create a node identity; its secret is printed once.
    Create {
        node_id: String,
        #[arg(long, default_value = "")]
        label: String,
    },
}

/// A failure to show the user: gRPC statuses are explained with their details.
fn report_error(e: &anyhow::Error) -> String {
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return explain(s);
    }
    format!("{e:#}")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fab: {}", report_error(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let json = cli.json;
    if let Command::Check { file } = &cli.command {
        return check(file, json);
    }
    if let Command::Estimate {
        file,
        profile,
        presets,
    } = &cli.command
    {
        estimate::offline(file, profile, presets, json)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let Command::Profiles(args) = &cli.command
        && args.installed
    {
        estimate::installed(args, json)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    let target = Target::resolve(cli.server, cli.token, cli.ca_cert)?;
    let client = Client::connect(&target).await?;
    match cli.command {
        Command::Check { .. } | Command::Estimate { .. } | Command::Demo(_) => {
            unreachable!("handled above")
        }
        Command::Profiles(args) => estimate::profiles(&client, &args, json).await?,
        Command::Upload { file } => upload(&client, &file, json).await?,
        Command::Designs { action } => designs(&client, action, json).await?,
        Command::Admin { action } => admin(&client, action, json).await?,
        Command::Jobs { action } => jobs::run(&client, action, json).await?,
        Command::Printers => jobs::printers(&client, json).await?,
        Command::Whoami => {
            let r = client
                .admin()
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            let role = pb::Role::try_from(r.role)
                .unwrap_or(pb::Role::Unspecified)
                .as_str_name()
                .trim_start_matches("ROLE_")
                .to_ascii_lowercase();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"principal": r.principal, "role": role, "token": r.token})
                );
            } else {
                println!("{} ({role})", r.principal);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Offline check; exits 1 when the mesh is not printable, 2 when it cannot be read.
fn check(file: &Path, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let limits = mesh::Limits::default();
    let bytes = mesh::read_file(file, limits.max_bytes)
        .with_context(|| format!("reading {}", file.display()))?;
    let checked = match mesh::check_stl(&bytes, &limits) {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"file": file.display().to_string(), "error": e.to_string()})
                );
            } else {
                eprintln!("{}: not a readable STL: {e}", file.display());
            }
            return Ok(std::process::ExitCode::from(2));
        }
    };
    let report = fabrouter_server::designs::stl_check_pb(&checked);
    if json {
        let mut v = output::report_json(&report);
        v["file"] = file.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", file.display());
        print!("{}", output::report_text(&report));
    }
    Ok(if report.verdict == pb::Verdict::NotPrintable as i32 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn file_sha256(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

async fn upload(client: &Client, file: &Path, json: bool) -> anyhow::Result<()> {
    let (sha, size) = file_sha256(file)?;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "design.stl".into());
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(size)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    // Pre-sliced G-code is told apart by its name, as slicers save it.
    let lower = file_name.to_ascii_lowercase();
    let format = if lower.ends_with(".gcode") || lower.ends_with(".gco") || lower.ends_with(".g") {
        pb::DesignFormat::Gcode
    } else {
        pb::DesignFormat::Stl
    };
    bar.set_message(format!("uploading {file_name}"));
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Metadata(
            pb::UploadMetadata {
                file_name,
                declared_size_bytes: size,
                sha256: sha,
                format: format as i32,
            },
        )),
    })
    .await?;
    let reader_bar = bar.clone();
    // Reading happens beside the RPC so the file is streamed, never held whole.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        loop {
            let mut buf = vec![0u8; UPLOAD_CHUNK_BYTES];
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            reader_bar.inc(n as u64);
            let msg = pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Chunk(buf)),
            };
            if tx.blocking_send(msg).is_err() {
                // The server ended the call (e.g. a limit); its status says why.
                return Ok(());
            }
        }
    });
    let res = client
        .designs()
        .upload_design(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    reader.await??;
    bar.finish_and_clear();
    let design = res?.into_inner();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::design_json(&design))?
        );
    } else {
        println!("uploaded {} as {}", design.file_name, design.name);
        if let Some(r) = &design.mesh_report {
            print!("{}", output::report_text(r));
        }
        if let Some(g) = &design.gcode_report {
            print!("{}", output::gcode_text(g));
        }
    }
    Ok(())
}

async fn designs(client: &Client, action: DesignsAction, json: bool) -> anyhow::Result<()> {
    let mut c = client.designs();
    match action {
        DesignsAction::List {
            page_size,
            page_token,
        } => {
            let r = c
                .list_designs(pb::ListDesignsRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "designs": r.designs.iter().map(output::design_json).collect::<Vec<_>>(),
                        "next_page_token": r.next_page_token,
                    }))?
                );
            } else {
                for d in &r.designs {
                    println!("{}", output::design_line(d));
                }
                if !r.next_page_token.is_empty() {
                    println!("more: --page-token {}", r.next_page_token);
                }
            }
        }
        DesignsAction::Get { name } => {
            let d = c
                .get_design(pb::GetDesignRequest { name })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::design_json(&d))?
                );
            } else {
                println!("{}", output::design_line(&d));
                if let Some(r) = &d.mesh_report {
                    print!("{}", output::report_text(r));
                }
            }
        }
        DesignsAction::Delete { name } => {
            let r = c
                .delete_design(pb::DeleteDesignRequest { name: name.clone() })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"name": name, "deleted": true, "blob_erased": r.blob_erased})
                );
            } else {
                println!(
                    "deleted {name}{}",
                    if r.blob_erased {
                        " and erased its bytes"
                    } else {
                        " (its bytes stay: another design has identical content)"
                    }
                );
            }
        }
        DesignsAction::Repair { name } => {
            let r = c
                .repair_design(pb::RepairDesignRequest { name })
                .await?
                .into_inner();
            let d = r.design.unwrap_or_default();
            let s = r.summary.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "design": output::design_json(&d),
                        "summary": {
                            "facets_removed": s.facets_removed,
                            "facets_added": s.facets_added,
                            "facets_reversed": s.facets_reversed,
                            "normals_fixed": s.normals_fixed,
                            "holes_filled": s.holes_filled,
                            "degenerate_removed": s.degenerate_removed,
                            "unconnected_removed": s.unconnected_removed,
                        }
                    }))?
                );
            } else {
                println!("repaired into {}", output::design_line(&d));
                println!(
                    "removed {} facets ({} degenerate, {} unconnected), added {}, reversed {}, fixed {} normals, filled {} holes",
                    s.facets_removed,
                    s.degenerate_removed,
                    s.unconnected_removed,
                    s.facets_added,
                    s.facets_reversed,
                    s.normals_fixed,
                    s.holes_filled
                );
                if let Some(r) = &d.mesh_report {
                    print!("{}", output::report_text(r));
                }
            }
        }
        DesignsAction::Estimate { name, profile } => {
            estimate::remote(client, name, profile, json).await?;
        }
        DesignsAction::Download { name, output } => {
            use tokio_stream::StreamExt;
            let mut stream = c
                .download_design(pb::DownloadDesignRequest { name })
                .await?
                .into_inner();
            let mut out = Vec::new();
            let mut expected = String::new();
            while let Some(msg) = stream.next().await {
                let msg = msg?;
                if !msg.sha256.is_empty() {
                    expected = msg.sha256;
                }
                out.extend_from_slice(&msg.chunk);
            }
            let got = hex::encode(sha2::Sha256::digest(&out));
            anyhow::ensure!(
                got == expected,
                "downloaded bytes hash to {got}, the router said {expected}"
            );
            std::fs::write(&output, &out)
                .with_context(|| format!("writing {}", output.display()))?;
            if !json {
                println!("wrote {} bytes to {}", out.len(), output.display());
            }
        }
    }
    Ok(())
}

async fn admin(client: &Client, action: AdminAction, json: bool) -> anyhow::Result<()> {
    let mut c = client.admin();
    match action {
        AdminAction::Token {
            action: TokenAction::Create { role, label },
        } => {
            let role = match role.as_str() {
                "designer" => pb::Role::Designer,
                "operator" => pb::Role::Operator,
                "marketplace" => pb::Role::Marketplace,
                _ => pb::Role::Admin,
            };
            let r = c
                .create_token(pb::CreateTokenRequest {
                    role: role as i32,
                    label,
                })
                .await?
                .into_inner();
            let name = r.token.map(|t| t.name).unwrap_or_default();
            if json {
                println!("{}", serde_json::json!({"name": name, "secret": r.secret}));
            } else {
                eprintln!("created {name}; the secret is shown only now:");
                println!("{}", r.secret);
            }
        }
        AdminAction::Token {
            action: TokenAction::List,
        } => {
            let r = c.list_tokens(pb::ListTokensRequest {}).await?.into_inner();
            for t in r.tokens {
                let role = pb::Role::try_from(t.role)
                    .unwrap_or(pb::Role::Unspecified)
                    .as_str_name()
                    .trim_start_matches("ROLE_")
                    .to_ascii_lowercase();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"name": t.name, "role": role, "principal": t.principal, "label": t.label})
                    );
                } else {
                    println!("{}  {role}  {}  {}", t.name, t.principal, t.label);
                }
            }
        }
        AdminAction::Token {
            action: TokenAction::Revoke { name },
        } => {
            c.revoke_token(pb::RevokeTokenRequest { name: name.clone() })
                .await?;
            if !json {
                println!("revoked {name}");
            }
        }
        AdminAction::Node {
            action: NodeAction::Create { node_id, label },
        } => {
            let r = c
                .create_node(pb::CreateNodeRequest { node_id, label })
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"node_id": r.node_id, "secret": r.secret})
                );
            } else {
                eprintln!(
                    "created node {}; put this secret in the node's TOML, it is shown only now:",
                    r.node_id
                );
                println!("{}", r.secret);
            }
        }
    }
    Ok(())
}
