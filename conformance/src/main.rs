//! `conformance`: judge an implementation of the protocols, as a server or as a client.

use clap::{Args, Parser, Subcommand};
use conformance::expectations::Expectations;
use conformance::probes::ProbeConfig;
use conformance::report::{exit, to_junit, Report};
use conformance::runner::{run, select, RunOptions};
use conformance::target::{CmdrelayOptions, OperatorChoice, SpawnSpec, Target, TokenChoice};
use reference_server::faults::{Fault, Faults};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Conformance suite for the logrtc, nodemgr, ecapture, cmdrelay and sfu protocols"
)]
#[command(
    after_help = "Exit codes: 0 all selected cases passed (non-strict allowed unless --strict), \
1 a case failed or an expectation is stale, 2 bad arguments, nothing selected, or a harness error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server cases against a target (the suite plays the clients).
    Run(Box<RunArgs>),
    /// List the case ids, levels and sources.
    List {
        #[arg(long, default_value = "nodemgr")]
        protocol: String,
    },
    /// Validate a client: the suite plays the server and grades what connects.
    Client(ClientArgs),
}

#[derive(Debug, Args)]
struct Selection {
    /// Only cases whose id matches this glob (repeatable), e.g. 'nodemgr/heartbeat/*'.
    #[arg(long)]
    include: Vec<String>,
    /// Skip cases whose id matches this glob (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Treat non-strict verdicts (SHOULDs missed, accepted variants) as failures.
    #[arg(long)]
    strict: bool,
    /// Write the JSON report (format conformance-report/v1) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Known failures: lines of `<case id> <reason>`. A listed case that passes is stale.
    #[arg(long)]
    expectations: Option<PathBuf>,
    /// Scale every wait and timeout (e.g. 3 for a slow target).
    #[arg(long, default_value_t = 1.0)]
    timeout_multiplier: f64,
    /// Whole-case timeout in seconds, before the multiplier.
    #[arg(long, default_value_t = 30)]
    case_timeout: u64,
    /// Print one line per case as it finishes.
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[arg(long, default_value = "nodemgr")]
    protocol: String,
    /// The server's WebSocket URL, e.g. ws://127.0.0.1:9999/api/v1/ws. Without --target and
    /// without a command, the in-process reference server is judged.
    #[arg(long)]
    target: Option<String>,
    /// The token to present (and to send the operator API).
    #[arg(long, default_value = "default-token")]
    token: String,
    /// The command trigger: `auto` (http://<target host>/api/v1), a base URL, or `none`.
    #[arg(long, default_value = "auto")]
    operator_api: String,
    /// With a spawned command: the text its ready line contains.
    #[arg(long, default_value = "ready")]
    ready_text: String,
    /// With a spawned command: seconds to wait for its ready line.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// cmdrelay: where the cases' tokens come from (each case needs rooms of its own).
    #[arg(long, value_enum, default_value_t = TokenMode::Mint)]
    token_mode: TokenMode,
    /// cmdrelay, --token-mode mint: the token API base (default http://<target host>/api/v1);
    /// --token is its bearer token.
    #[arg(long)]
    admin_api: Option<String>,
    /// cmdrelay, --token-mode list: the valid tokens, comma separated (one room each).
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<String>,
    /// cmdrelay: a token the target holds expired (minted in mint mode).
    #[arg(long)]
    expired_token: Option<String>,
    /// cmdrelay, ecapture: the target's heartbeat period, e.g. 10s. Without it cmdrelay's
    /// period is measured and only checked for steadiness; ecapture's is taken as 15 s.
    #[arg(long, value_parser = humantime::parse_duration)]
    heartbeat_period: Option<Duration>,
    /// sfu: how long the target keeps a peer that sends no keepalive, e.g. 60s. Without it
    /// the keepalive-timeout case is reported unimplemented.
    #[arg(long, value_parser = humantime::parse_duration)]
    keepalive_timeout: Option<Duration>,
    /// In-process target only: inject a reference-server fault (to see the suite fail).
    #[arg(long = "fault")]
    faults: Vec<Fault>,
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    report: ReportArgs,
    /// A command that starts the server and prints a ready line with its ws:// URL.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TokenMode {
    /// Mint a fresh token per room through the token API (the reference server's).
    Mint,
    /// The target accepts any token: random ones.
    Any,
    /// Only the tokens given with --tokens.
    List,
}

#[derive(Debug, Args)]
struct ClientArgs {
    #[arg(long, default_value = "nodemgr")]
    protocol: String,
    /// Address the suite listens on; {url} in the command is replaced by its ws:// URL.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Seconds to wait for the client to connect and for each step it must take.
    #[arg(long, default_value_t = 40)]
    wait: u64,
    /// logrtc only: the role of the client under test, producer or consumer.
    #[arg(long, default_value = "producer")]
    role: String,
    #[command(flatten)]
    report: ReportArgs,
    /// The client to start, e.g. -- reference-server node-agent --url {url},
    /// -- reference-server device --url {url}, (ecapture: its JSON Lines on stdout are
    /// graded) -- reference-server ecapture-collect --url {url} --jsonl -, or (logrtc, a
    /// producer that must be logging) -- logrtc-demo-producer --url {url} --seq
    #[arg(last = true)]
    command: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::List { protocol } => list(&protocol),
        Command::Run(args) => run_servers(*args).await,
        Command::Client(args) => run_client(args).await,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

fn list(protocol: &str) -> i32 {
    let Some(cases) = conformance::cases::for_protocol(protocol) else {
        return unknown_protocol(protocol);
    };
    for case in cases {
        println!(
            "{:<62} {:<6} {}",
            case.id,
            format!("{:?}", case.level).to_uppercase(),
            case.source
        );
    }
    exit::OK
}

fn unknown_protocol(protocol: &str) -> i32 {
    eprintln!(
        "error: no cases for protocol {protocol:?}; known: {}",
        conformance::cases::PROTOCOLS.join(", ")
    );
    exit::USAGE_OR_HARNESS
}

fn run_options(report: &ReportArgs, selection: Option<&Selection>) -> Result<RunOptions, String> {
    let expectations = match &report.expectations {
        Some(path) => Expectations::load(path).map_err(|e| e.to_string())?,
        None => Expectations::default(),
    };
    Ok(RunOptions {
        include: selection.map(|s| s.include.clone()).unwrap_or_default(),
        exclude: selection.map(|s| s.exclude.clone()).unwrap_or_default(),
        strict: report.strict,
        case_timeout: Duration::from_secs(report.case_timeout),
        multiplier: report.timeout_multiplier,
        expectations,
        progress: report.progress,
        ..RunOptions::default()
    })
}

async fn run_servers(args: RunArgs) -> i32 {
    let Some(cases) = conformance::cases::for_protocol(&args.protocol) else {
        return unknown_protocol(&args.protocol);
    };
    let options = match run_options(&args.report, Some(&args.selection)) {
        Ok(options) => options,
        Err(message) => return usage_error(&message),
    };
    let cases = match select(cases, &options.include, &options.exclude) {
        Ok(cases) => cases,
        Err(error) => return usage_error(&error.to_string()),
    };
    let target = match resolve_target(&args, &options).await {
        Ok(target) => target,
        Err(message) => return usage_error(&message),
    };
    eprintln!(
        "running {} {} cases against {}",
        cases.len(),
        args.protocol,
        target.description
    );
    let report = run(&args.protocol, cases, &target, &options).await;
    emit(&report, &args.report)
}

async fn resolve_target(args: &RunArgs, options: &RunOptions) -> Result<Target, String> {
    let wait = options.ctx_wait();
    let operator = OperatorChoice::parse(Some(&args.operator_api));
    if !args.faults.is_empty() && (args.target.is_some() || !args.command.is_empty()) {
        return Err("--fault applies to the in-process reference server only".to_owned());
    }
    let cmdrelay = (args.protocol == "cmdrelay").then(|| cmdrelay_options(args));
    if !args.command.is_empty() {
        let spec = SpawnSpec {
            command: args.command.clone(),
            ready_text: args.ready_text.clone(),
            ready_timeout: Duration::from_secs(args.ready_timeout),
            ws_url: args.target.clone(),
            protocol: args.protocol.clone(),
            token: args.token.clone(),
            operator,
            cmdrelay,
            heartbeat_period: args.heartbeat_period,
            keepalive_timeout: args.keepalive_timeout,
        };
        return Target::spawn(&spec, wait).await.map_err(|e| e.to_string());
    }
    match (&args.target, args.protocol.as_str()) {
        (Some(url), "ecapture") => return Ok(Target::ecapture_url(url, args.heartbeat_period)),
        (Some(url), "logrtc") => return Ok(Target::logrtc_url(url)),
        (Some(url), "sfu") => return Ok(Target::sfu_url(url, args.keepalive_timeout)),
        _ => {}
    }
    match (&args.target, cmdrelay) {
        (Some(url), Some(options)) => Target::cmdrelay_url(url, &options, wait)
            .await
            .map_err(|e| e.to_string()),
        (Some(url), None) => Ok(Target::url(url, &args.token, &operator, wait)),
        (None, _) => Target::in_process(args.faults.iter().copied().collect::<Faults>(), wait)
            .await
            .map_err(|e| e.to_string()),
    }
}

fn cmdrelay_options(args: &RunArgs) -> CmdrelayOptions {
    let tokens = match (args.token_mode, &args.admin_api) {
        (TokenMode::Mint, None) => TokenChoice::MintSameHost {
            admin_token: args.token.clone(),
        },
        (TokenMode::Mint, Some(base)) => TokenChoice::Mint {
            base: base.clone(),
            admin_token: args.token.clone(),
        },
        (TokenMode::Any, _) => TokenChoice::Any,
        (TokenMode::List, _) => TokenChoice::Pool(args.tokens.clone()),
    };
    CmdrelayOptions {
        tokens,
        expired_token: args.expired_token.clone(),
        heartbeat_period: args.heartbeat_period,
    }
}

fn usage_error(message: &str) -> i32 {
    eprintln!("error: {message}");
    exit::USAGE_OR_HARNESS
}

/// Prints the console report, writes the files asked for, and returns the exit code.
fn emit(report: &Report, args: &ReportArgs) -> i32 {
    print!("{}", report.to_console());
    let writes = [
        (&args.json, report.to_json()),
        (&args.junit, to_junit(report)),
    ];
    for (path, text) in writes {
        if let Some(path) = path {
            if let Err(error) = std::fs::write(path, text) {
                return usage_error(&format!("cannot write {}: {error}", path.display()));
            }
        }
    }
    report.exit_code()
}

async fn run_client(args: ClientArgs) -> i32 {
    use conformance::probes::logrtc;
    let options = match run_options(&args.report, None) {
        Ok(options) => options,
        Err(message) => return usage_error(&message),
    };
    let probe = ProbeConfig {
        listen: args.listen.clone(),
        command: args.command.clone(),
        wait: Duration::from_secs(args.wait).mul_f64(options.multiplier.max(0.1)),
        options,
    };
    let report = match args.protocol.as_str() {
        "nodemgr" => conformance::probes::nodemgr::run_probe(&probe).await,
        "cmdrelay" => conformance::probes::cmdrelay::run_probe(&probe).await,
        "ecapture" => conformance::probes::ecapture::run_probe(&probe).await,
        "sfu" => conformance::probes::sfu::run_probe(&probe).await,
        "logrtc" => match args.role.as_str() {
            "producer" => logrtc::run_probe(&probe, logrtc::Role::Producer).await,
            "consumer" => logrtc::run_probe(&probe, logrtc::Role::Consumer).await,
            other => {
                return usage_error(&format!(
                    "unknown --role {other:?}: use producer or consumer"
                ))
            }
        },
        other => return unknown_protocol(other),
    };
    match report {
        Ok(report) => emit(&report, &args.report),
        Err(error) => usage_error(&error.to_string()),
    }
}
