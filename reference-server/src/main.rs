//! `reference-server`: serves every implemented protocol on its default port, or runs a
//! reference client.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use reference_server::clients::collector;
use reference_server::clients::device::{DeviceConfig, EchoHandler, ExecuteHandler, ShellHandler};
use reference_server::clients::node_agent::{self, AgentConfig};
use reference_server::faults::{Fault, Faults};
use reference_server::media::ViaStr0m;
use reference_server::media::{default_fanout_threads, MediaOptions, MAX_FANOUT_THREADS};
use reference_server::protocol::cmdrelay;
use reference_server::protocol::ecapture::{self, source::SourceConfig};
use reference_server::protocol::logrtc;
use reference_server::protocol::nodemgr::{SessionConfig, DEFAULT_TOKEN};
use reference_server::protocol::sfu;
use reference_server::server::{
    start_cmdrelay, start_ecapture, start_logrtc, start_nodemgr, start_sfu, CmdrelaySetup, SfuSetup,
};
use reference_server::store::{SqliteSync, StoreConfig};
use reference_server::transport::ecapture::EcaptureConfig;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A server allocates and frees a little for every message on every thread: glibc's malloc
/// and free were 6% of a heartbeat's CPU samples. mimalloc's share of the gain was not told
/// apart from the noise (docs/performance.md, "A count instead of a channel").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Reference server for the logrtc, nodemgr, ecapture, cmdrelay and sfu protocols"
)]
#[command(
    after_help = "With no subcommand, serves every implemented protocol (today: nodemgr on 127.0.0.1:9999, cmdrelay on 127.0.0.1:8765, ecapture on 127.0.0.1:28257, logrtc on 127.0.0.1:8080 with its viewer at http://127.0.0.1:8080/, sfu signaling on ws://127.0.0.1:8443/ws?peer=<uid> with media on UDP 127.0.0.1:8443).\n\
It prints one line `ready <protocol> <url>` per service once it accepts connections."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the protocols (the default).
    Serve(Box<ServeArgs>),
    /// Run the reference nodemgr node agent against a core.
    NodeAgent(NodeAgentArgs),
    /// Collect an eCapture stream: one readable line per entry, and JSON Lines if asked.
    EcaptureCollect(CollectArgs),
    /// Run the reference cmdrelay device: joins a token's room and answers `execute`.
    Device(DeviceArgs),
    /// List the faults that `--fault` can inject.
    Faults,
}

#[derive(Debug, Args, Clone)]
struct ServeArgs {
    /// Address to bind. Loopback by default; use 0.0.0.0 to serve other hosts.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// nodemgr port (0 picks a free one).
    #[arg(long, default_value_t = 9999)]
    nodemgr_port: u16,
    /// The token nodes and operators must present.
    #[arg(long, env = "NODEMGR_TOKEN", default_value = DEFAULT_TOKEN)]
    token: String,
    /// Directory of the default SQLite database.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// sqlite://FILE or postgres://USER:PASS@HOST/DB instead of the default SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// A registered node with no heartbeat for this long is marked offline.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    offline_after: Duration,
    /// Time added to a command's timeout before the core reports COMMAND_TIMEOUT.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    command_grace: Duration,
    /// Sustained messages per second one node connection may send (burst: 4x).
    #[arg(long, default_value_t = 50.0)]
    rate_limit: f64,
    /// SQLite: how long a write waits for a lock before it fails with DATABASE_ERROR.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    db_busy_timeout: Duration,
    /// SQLite: `full` fsyncs every commit before its ack (survives power loss); `normal`
    /// leaves that to checkpoints (survives a crash of this process, not of the machine).
    #[arg(long, default_value = "full")]
    sqlite_sync: SqliteSync,
    /// cmdrelay port (0 picks a free one).
    #[arg(long, default_value_t = 8765)]
    cmdrelay_port: u16,
    /// A cmdrelay token added (without expiry) at start; repeatable. More through the token API.
    #[arg(long = "cmdrelay-token", default_value = cmdrelay::DEFAULT_TOKEN)]
    cmdrelay_tokens: Vec<String>,
    /// Bearer token of cmdrelay's token API (/api/v1/tokens on the cmdrelay port).
    #[arg(long, env = "CMDRELAY_ADMIN_TOKEN", default_value = cmdrelay::DEFAULT_TOKEN)]
    cmdrelay_admin_token: String,
    /// Period of cmdrelay's server Heartbeat.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_period: Duration,
    /// A cmdrelay connection that sends no init within this is closed (1008).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    init_timeout: Duration,
    /// A cmdrelay client that sends nothing, not even a pong, for this long is dropped (1001).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Sustained frames per second one cmdrelay client may send (burst: 5x).
    #[arg(long, default_value_t = 200.0)]
    cmdrelay_rate_limit: f64,
    /// ecapture port (0 picks a free one).
    #[arg(long, default_value_t = ecapture::DEFAULT_PORT)]
    ecapture_port: u16,
    /// Period of ecapture's heartbeat.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    ecapture_heartbeat_period: Duration,
    /// Replay the events of this JSON Lines file (format: fixtures/ecapture/README.md)
    /// instead of the built-in sample.
    #[arg(long, value_name = "FILE")]
    ecapture_events: Option<PathBuf>,
    /// Generate synthetic events with payloads of this many bytes instead of replaying.
    #[arg(long, value_name = "BYTES", conflicts_with = "ecapture_events")]
    ecapture_synthetic: Option<usize>,
    /// Events per second pushed to ecapture clients (0: heartbeats and process logs only).
    #[arg(long, default_value_t = 2.0)]
    ecapture_rate: f64,
    /// Replay the events once instead of repeating them.
    #[arg(long)]
    ecapture_once: bool,
    /// Frames an ecapture client may fall behind before it is disconnected.
    #[arg(long, default_value_t = ecapture::QUEUE_DEPTH)]
    ecapture_queue_depth: usize,
    /// logrtc port: signaling at /signaling, the log viewer at / (0 picks a free one).
    #[arg(long, default_value_t = logrtc::DEFAULT_PORT)]
    logrtc_port: u16,
    /// logrtc: a WebSocket ping goes to each signaling client this often.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    logrtc_ping_period: Duration,
    /// logrtc: a signaling client that sends nothing, not even a pong, for this long is dropped.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    logrtc_idle_timeout: Duration,
    /// sfu signaling port: protoo at /ws?peer=<uid>, the demo page at / (0 picks a free one).
    #[arg(long, default_value_t = sfu::DEFAULT_PORT)]
    sfu_port: u16,
    /// sfu: the one UDP port that carries every peer connection's media (0 picks a free one).
    #[arg(long, default_value_t = sfu::DEFAULT_PORT)]
    sfu_media_port: u16,
    /// sfu: a peer that sends no request (keepalive or other) for this long is removed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    sfu_keepalive_timeout: Duration,
    /// sfu: the `sfuid` this server writes in publish answers, pubs and stream-add.
    #[arg(long, default_value = "sfu_1")]
    sfu_id: String,
    /// sfu: record each published Opus track to DIR/<mid>.ogg (Ogg Opus, RFC 7845).
    #[arg(long, value_name = "DIR")]
    sfu_record_dir: Option<PathBuf>,
    /// sfu: forward Opus through each subscriber's str0m peer connection instead of sealing it
    /// with the subscriber's SRTP key directly (slower; see CLARIFICATIONS S8).
    #[arg(long)]
    sfu_audio_via_str0m: bool,
    /// sfu: the same for VP8: str0m writes it, and resends it from its own buffer when NACKed.
    #[arg(long)]
    sfu_video_via_str0m: bool,
    /// sfu: threads that seal and send forwarded media beside the media loop, each for its
    /// share of the subscribers, all on the one socket (0 to 7; by default one for each core
    /// past the first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=MAX_FANOUT_THREADS as i64))]
    sfu_fanout_threads: Option<u16>,

    /// sfu: packets resent to one subscriber a second, at most, in answer to its NACKs, in
    /// bursts of up to 128 (and at most a second's worth); past that a NACK is answered in part
    /// or not at all.
    #[arg(long, value_name = "N", default_value_t = reference_server::media::MAX_RESENT_PER_SECOND, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sfu_resends_per_second: u32,
    /// sfu: the `signalid` this server writes in the join answer's users.
    #[arg(long, default_value = "signal_1")]
    signal_id: String,
    /// Inject a named deviation, e.g. nodemgr/ack-fresh-id (repeatable; see `faults`).
    #[arg(long = "fault", value_name = "PROTOCOL/NAME")]
    faults: Vec<Fault>,
}

#[derive(Debug, Args)]
struct NodeAgentArgs {
    /// The core's WebSocket URL, without query.
    #[arg(long, default_value = "ws://127.0.0.1:9999/api/v1/ws")]
    url: String,
    #[arg(long, env = "NODEMGR_TOKEN", default_value = DEFAULT_TOKEN)]
    token: String,
    /// This node's id; the core generates a UUID when absent.
    #[arg(long)]
    node_id: Option<String>,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Run the commands the core sends. Off by default: they run as this user via `sh -c`.
    #[arg(long)]
    allow_commands: bool,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Give up after this many failed connection attempts in a row.
    #[arg(long)]
    max_attempts: Option<u32>,
}

#[derive(Debug, Args)]
struct DeviceArgs {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8765/websocket")]
    url: String,
    /// The token whose room to join.
    #[arg(long, env = "CMDRELAY_TOKEN", default_value = cmdrelay::DEFAULT_TOKEN)]
    token: String,
    /// Run `extra.command` with `sh -c` and answer its stdout. Off by default: the device then
    /// answers each command with its own text (an echo), which runs nothing.
    #[arg(long)]
    allow_commands: bool,
    /// With --allow-commands: kill a command after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    command_timeout: Duration,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Give up after this many failed connection attempts in a row.
    #[arg(long)]
    max_attempts: Option<u32>,
}

#[derive(Debug, Args)]
struct CollectArgs {
    /// The eCapture server's WebSocket URL (its --ecaptureq address).
    #[arg(long, default_value = "ws://127.0.0.1:28257/")]
    url: String,
    /// The Origin header sent with the handshake (eCapture refuses handshakes without one).
    #[arg(long, default_value = collector::DEFAULT_ORIGIN)]
    origin: String,
    /// Also write one JSON record per entry to FILE; `-` writes them to stdout instead of
    /// the readable lines.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// Stop after this many entries.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Make a deliberate mistake, e.g. ecapture-collector/no-origin (repeatable; see `faults`).
    #[arg(long = "fault", value_name = "ecapture-collector/NAME")]
    faults: Vec<Fault>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Each node holds a socket: allow as many as the hard limit permits.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::NodeAgent(args)) => agent(args).await,
        Some(Command::Device(args)) => device(args).await,
        Some(Command::EcaptureCollect(args)) => collect(args).await,
        Some(Command::Faults) => {
            for fault in Fault::ALL {
                println!("{:<40} {}", fault.name(), fault.describe());
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = match &args.database_url {
        Some(url) => StoreConfig::from_url(url.clone()),
        None => StoreConfig::sqlite_in(&args.data_dir)?,
    };
    let store = StoreConfig {
        busy_timeout: args.db_busy_timeout,
        sqlite_sync: args.sqlite_sync,
        ..store
    };
    let session = SessionConfig {
        token: args.token.clone(),
        offline_after: args.offline_after,
        command_grace: args.command_grace,
        rate_per_sec: args.rate_limit,
        rate_burst: args.rate_limit * 4.0,
        faults: args.faults.iter().copied().collect::<Faults>(),
    };
    let listener = bind(args.bind, args.nodemgr_port, "nodemgr").await?;
    let nodemgr = start_nodemgr(listener, session, &store).await?;
    let listener = bind(args.bind, args.cmdrelay_port, "cmdrelay").await?;
    let cmdrelay = start_cmdrelay(listener, cmdrelay_setup(&args), &store).await?;
    let listener = bind(args.bind, args.ecapture_port, "ecapture").await?;
    let ecapture = start_ecapture(listener, ecapture_config(&args)?).await?;
    let listener = bind(args.bind, args.logrtc_port, "logrtc").await?;
    let logrtc = start_logrtc(listener, logrtc_config(&args)).await?;
    let listener = bind(args.bind, args.sfu_port, "sfu").await?;
    let sfu = start_sfu(listener, sfu_setup(&args))
        .await
        .with_context(|| {
            format!(
                "cannot start the SFU; pick another UDP port with --sfu-media-port (now {})",
                args.sfu_media_port
            )
        })?;
    for fault in &args.faults {
        tracing::warn!(%fault, "fault injected: this server deviates from the documents on purpose");
    }
    println!(
        "ready nodemgr {} operator {}",
        nodemgr.ws_url(),
        nodemgr.operator_url()
    );
    println!(
        "ready cmdrelay {} tokens {}/tokens",
        cmdrelay.ws_url(),
        cmdrelay.admin_url()
    );
    println!("ready ecapture {}", ecapture.ws_url());
    println!(
        "ready logrtc {} viewer {}",
        logrtc.ws_url(),
        logrtc.viewer_url()
    );
    println!(
        "ready sfu {}?peer=<uid> media udp {} page {}",
        sfu.ws_url(),
        sfu.media.local_addr,
        sfu.page_url()
    );
    tokio::signal::ctrl_c().await?;
    sfu.stop().await;
    nodemgr.stop().await;
    cmdrelay.stop().await;
    ecapture.stop().await;
    logrtc.stop().await;
    Ok(())
}

async fn bind(ip: IpAddr, port: u16, protocol: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::new(ip, port);
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for {protocol}; pick another port with --{protocol}-port")
    })
}

fn cmdrelay_setup(args: &ServeArgs) -> CmdrelaySetup {
    CmdrelaySetup {
        session: cmdrelay::SessionConfig {
            heartbeat_period: args.heartbeat_period,
            init_timeout: args.init_timeout,
            idle_timeout: args.idle_timeout,
            rate_per_sec: args.cmdrelay_rate_limit,
            rate_burst: args.cmdrelay_rate_limit * 5.0,
            faults: args.faults.iter().copied().collect::<Faults>(),
        },
        tokens: args.cmdrelay_tokens.clone(),
        admin_token: args.cmdrelay_admin_token.clone(),
    }
}

fn ecapture_config(args: &ServeArgs) -> anyhow::Result<EcaptureConfig> {
    let rate = args.ecapture_rate;
    let source = match (&args.ecapture_events, args.ecapture_synthetic) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the replay file {}", path.display()))?;
            let events = ecapture::records::parse_lines(&text)
                .with_context(|| format!("{} is not a replay file", path.display()))?;
            SourceConfig::Replay {
                events,
                rate,
                repeat: !args.ecapture_once,
            }
        }
        (None, Some(payload_size)) => SourceConfig::Synthetic { rate, payload_size },
        (None, None) => SourceConfig::Replay {
            events: ecapture::records::parse_lines(ecapture::records::SAMPLE)?,
            rate,
            repeat: !args.ecapture_once,
        },
    };
    Ok(EcaptureConfig {
        session: ecapture::SessionConfig {
            heartbeat_period: args.ecapture_heartbeat_period,
            faults: args.faults.iter().copied().collect::<Faults>(),
        },
        queue_depth: args.ecapture_queue_depth,
        startup_log_limit: ecapture::STARTUP_LOG_LIMIT,
        source,
    })
}

fn sfu_setup(args: &ServeArgs) -> SfuSetup {
    SfuSetup {
        session: sfu::SessionConfig {
            keepalive_timeout: args.sfu_keepalive_timeout,
            faults: args.faults.iter().copied().collect::<Faults>(),
            ..sfu::SessionConfig::default()
        },
        ids: sfu::ServerIds {
            signal_id: args.signal_id.clone(),
            sfu_id: args.sfu_id.clone(),
        },
        media_bind: SocketAddr::new(args.bind, args.sfu_media_port),
        media: MediaOptions {
            record_dir: args.sfu_record_dir.clone(),
            via_str0m: ViaStr0m {
                audio: args.sfu_audio_via_str0m,
                video: args.sfu_video_via_str0m,
            },
            fanout_threads: args
                .sfu_fanout_threads
                .map_or_else(default_fanout_threads, usize::from),
            resends_per_second: args.sfu_resends_per_second,
        },
    }
}

fn logrtc_config(args: &ServeArgs) -> logrtc::SessionConfig {
    logrtc::SessionConfig {
        ping_period: args.logrtc_ping_period,
        idle_timeout: args.logrtc_idle_timeout,
        faults: args.faults.iter().copied().collect::<Faults>(),
        ..logrtc::SessionConfig::default()
    }
}

async fn collect(args: CollectArgs) -> anyhow::Result<()> {
    let config = collector::CollectorConfig {
        url: args.url,
        origin: args.origin,
        max_entries: args.count,
        duration: args.duration,
        faults: args.faults.iter().copied().collect(),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let mut file = match &args.jsonl {
        Some(path) if path.as_os_str() != "-" => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        _ => None,
    };
    let jsonl_to_stdout = args.jsonl.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let mut sinks = collector::Sinks {
        readable: None,
        jsonl: None,
    };
    if jsonl_to_stdout {
        sinks.jsonl = Some(&mut stdout);
    } else {
        sinks.readable = Some(&mut stdout);
        sinks.jsonl = file.as_mut().map(|f| f as &mut (dyn std::io::Write + Send));
    }
    let tally = tokio::select! {
        tally = collector::run(&config, &mut sinks) => tally?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
    };
    eprintln!(
        "collected {} entries: {} events, {} heartbeats, {} process logs, {} empty, {} undecodable frames",
        tally.entries(), tally.events, tally.heartbeats, tally.logs, tally.empty, tally.undecodable
    );
    Ok(())
}

async fn device(args: DeviceArgs) -> anyhow::Result<()> {
    let handler: Arc<dyn ExecuteHandler> = if args.allow_commands {
        Arc::new(ShellHandler {
            timeout: args.command_timeout,
        })
    } else {
        Arc::new(EchoHandler)
    };
    let config = DeviceConfig {
        url: args.url,
        token: args.token,
        handler,
        max_backoff: args.max_backoff,
        max_attempts: args.max_attempts,
    };
    tokio::select! {
        result = reference_server::clients::device::run(config) => Ok(result?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn agent(args: NodeAgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig {
        url: args.url,
        token: args.token,
        node_id: args.node_id,
        heartbeat_interval: args.heartbeat_interval,
        allow_commands: args.allow_commands,
        max_backoff: args.max_backoff,
        max_attempts: args.max_attempts,
    };
    tokio::select! {
        result = node_agent::run(config) => Ok(result?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
