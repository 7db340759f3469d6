//! The operator binary: `backup-operator run` (the controller), `backup-operator crd` and
//! `backup-operator plugin` (a strategy plugin on the command line).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backup_operator::context::{self, Context};
use backup_operator::operator;
use backup_operator::strategy::check::PlanPolicy;
use backup_operator::strategy::{RuntimeConfig, StrategyRuntime};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "backup-operator", version, about = "Schedules, runs and verifies backups of StatefulSet PVCs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the current kubeconfig or the in-cluster config.
    Run(Box<RunArgs>),
    /// Print a CRD as YAML (the BackupPolicy's by default), or with --docs the field reference
    /// of both as Markdown (docs/reference/crd-fields.md).
    Crd {
        #[arg(long, value_enum, default_value = "backuppolicy")]
        kind: CrdKind,
        #[arg(long)]
        docs: bool,
    },
    /// Try a strategy plugin without a cluster: describe, validate a config, plan a sample
    /// request (exit 2: the host refuses the plan; 3: the plugin failed), sha256.
    Plugin {
        #[command(subcommand)]
        command: backup_operator::plugin_cli::PluginCommand,
    },
    /// Internal: compile the component on stdin for this operator's engine (run by the operator
    /// in a child process, within limits).
    #[command(hide = true)]
    CompilePlugin,
}

#[derive(Clone, Copy, ValueEnum)]
enum CrdKind {
    Backuppolicy,
    Backuprestore,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Parser)]
struct RunArgs {
    /// Directory of custom plugins (`spec.plugin.file`), typically a mounted ConfigMap.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Where compiled plugins are cached across restarts.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_CACHE_DIR")]
    plugin_cache_dir: Option<PathBuf>,
    /// Memory a plugin call may use; policies may only lower it.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_MEMORY_LIMIT_BYTES", default_value_t = 64 * 1024 * 1024)]
    plugin_memory_limit_bytes: u64,
    /// Time a plugin call may take; policies may only lower it.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_TIMEOUT_MS", default_value_t = 1000)]
    plugin_timeout_ms: u64,
    /// Plugin calls running at once.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_CONCURRENCY", default_value_t = 4)]
    plugin_concurrency: usize,
    /// Plugin compilations running at once (apart from the calls).
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_COMPILE_CONCURRENCY", default_value_t = 1)]
    plugin_compile_concurrency: usize,
    /// Bytes of compiled plugins kept in memory (least recently used go first).
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_CACHE_MEMORY_BYTES", default_value_t = 256 << 20)]
    plugin_cache_memory_bytes: u64,
    /// Bytes of compiled plugins kept in --plugin-cache-dir (least recently used go first).
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_CACHE_DISK_BYTES", default_value_t = 512 << 20)]
    plugin_cache_disk_bytes: u64,
    /// Address space of the child process that compiles a plugin; at most three quarters of
    /// the container's memory limit (read from its cgroup, never under 384 MiB), and the child
    /// is what the kernel ends first when the container runs out.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_COMPILE_MEMORY_BYTES", default_value_t = 1 << 30)]
    plugin_compile_memory_bytes: u64,
    /// Time a plugin's compilation may take.
    #[arg(long, env = "BACKUP_OPERATOR_PLUGIN_COMPILE_TIMEOUT_MS", default_value_t = 20_000)]
    plugin_compile_timeout_ms: u64,
    /// Images plans may use (comma-separated), matched on registry and repository as the
    /// container runtime reads a reference: `busybox` (any tag of docker.io/library/busybox),
    /// `busybox:1.36`, `registry.example.com/backup/` (every repository below it); empty allows
    /// every valid reference.
    #[arg(long, env = "BACKUP_OPERATOR_IMAGE_ALLOWLIST", value_delimiter = ',', value_parser = parse_allowed_image)]
    image_allowlist: Vec<backup_operator::strategy::image::AllowedImage>,
    /// Let plans take env values from Secrets.
    #[arg(long, env = "BACKUP_OPERATOR_ALLOW_SECRET_ENV")]
    allow_secret_env: bool,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "BACKUP_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    #[arg(long, value_enum, default_value = "human", env = "BACKUP_OPERATOR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Where /metrics, /healthz and /readyz are served ("" to serve nothing).
    #[arg(long, default_value = "0.0.0.0:8080", env = "BACKUP_OPERATOR_METRICS_ADDRESS")]
    metrics_bind_address: String,
    /// Reconcile only while holding a Lease, so that several replicas can run.
    #[arg(long, env = "BACKUP_OPERATOR_LEADER_ELECT")]
    leader_elect: bool,
    /// The Lease's namespace (default: the pod's, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// The Lease's name.
    #[arg(long, env = "BACKUP_OPERATOR_LEADER_ELECTION_ID", default_value = "backup-operator-leader")]
    leader_election_id: String,
    /// Reconciles running at once, per controller (policies, restores). 48: with status writes
    /// and events waiting for the runs' Jobs, 1,000 policies due at once got their Jobs in 2.8 s
    /// at 48 against 3.2 s at 16 (make bench-scale).
    #[arg(long, env = "BACKUP_OPERATOR_RECONCILE_CONCURRENCY", default_value_t = 48, value_parser = clap::value_parser!(u16).range(1..=256))]
    reconcile_concurrency: u16,
    /// Policies' hooks running at once (each holds a reconcile worker for up to its timeout); kept
    /// below --reconcile-concurrency, so that policies without hooks always find a worker. A run
    /// whose hooks find no slot waits and is tried again 5 s later.
    #[arg(long, env = "BACKUP_OPERATOR_HOOK_CONCURRENCY", default_value_t = backup_operator::context::DEFAULT_HOOK_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=256))]
    hook_concurrency: u16,
    /// Hooks running at once in one namespace, so that one tenant's slow hooks cannot take every
    /// slot.
    #[arg(long, env = "BACKUP_OPERATOR_HOOK_CONCURRENCY_PER_NAMESPACE", default_value_t = backup_operator::context::DEFAULT_HOOK_CONCURRENCY_PER_NAMESPACE, value_parser = clap::value_parser!(u16).range(1..=256))]
    hook_concurrency_per_namespace: u16,
    /// Address ranges webhooks may reach although internal (loopback, link-local, private,
    /// shared), comma-separated CIDRs: e.g. the range of an in-cluster receiver.
    #[arg(long, env = "BACKUP_OPERATOR_NOTIFICATION_ALLOW_CIDR", value_delimiter = ',')]
    notification_allow_cidr: Vec<ipnet::IpNet>,
    /// Webhook host names allowed whatever they resolve to (comma-separated, exact).
    #[arg(long, env = "BACKUP_OPERATOR_NOTIFICATION_ALLOW_HOST", value_delimiter = ',')]
    notification_allow_host: Vec<String>,
    /// Act for each policy and restore as a ServiceAccount of its namespace (its
    /// `serviceAccountName`, or --default-service-account), so that RBAC decides what a tenant's
    /// object may make the operator do: exec of hooks, reading the Secrets and ConfigMaps it
    /// names, creating its Jobs and VolumeSnapshots, writing the PVCs it restores into. Needs
    /// `impersonate` on serviceaccounts and groups (config/rbac). Without it, hooks run only in
    /// namespaces labelled backup.example.com/hooks=enabled.
    #[arg(long, env = "BACKUP_OPERATOR_TENANT_IMPERSONATION")]
    tenant_impersonation: bool,
    /// The ServiceAccount acted as for objects that name none (with --tenant-impersonation).
    #[arg(long, env = "BACKUP_OPERATOR_DEFAULT_SERVICE_ACCOUNT", default_value = "backup")]
    default_service_account: String,
    /// More ranges webhooks may not reach (comma-separated CIDRs): the cluster's service and pod
    /// ranges when they are public addresses (private ones are refused anyway).
    #[arg(long, env = "BACKUP_OPERATOR_NOTIFICATION_DENY_CIDR", value_delimiter = ',')]
    notification_deny_cidr: Vec<ipnet::IpNet>,
}

fn parse_allowed_image(entry: &str) -> Result<backup_operator::strategy::image::AllowedImage, String> {
    backup_operator::strategy::image::AllowedImage::parse(entry)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(Box::new(RunArgs::parse_from(["backup-operator"])))) {
        Command::Crd { kind, docs } => match match (docs, kind) {
            (true, _) => backup_operator::api::reference::markdown(),
            (false, CrdKind::Backuppolicy) => backup_operator::api::crd_yaml(),
            (false, CrdKind::Backuprestore) => backup_operator::api::restore_crd_yaml(),
        } {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("backup-operator: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::CompilePlugin => backup_operator::strategy::compile::compile_child_main(),
        Command::Plugin { command } => match backup_operator::plugin_cli::run(command).await {
            Ok(out) => {
                print!("{out}");
                std::process::ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{}", failure.message);
                std::process::ExitCode::from(failure.code)
            }
        },
        Command::Run(args) => {
            init_logging(args.log_format);
            // Settings from the environment (the ConfigMap backup-operator-config, through envFrom):
            // said at start, so that `kubectl logs` shows what the operator runs with.
            let from_env: Vec<String> = std::env::vars().filter(|(k, _)| k.starts_with("BACKUP_OPERATOR_")).map(|(k, v)| format!("{k}={v}")).collect();
            if !from_env.is_empty() {
                tracing::info!("settings from the environment: {}", from_env.join(" "));
            }
            let readiness = backup_operator::telemetry::serve::Readiness::default();
            // The process's one set of metrics, handed to everything that counts.
            let metrics = Arc::new(backup_operator::telemetry::metrics::Metrics::new());
            if !args.metrics_bind_address.is_empty() {
                let address: std::net::SocketAddr = match args.metrics_bind_address.parse() {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!("--metrics-bind-address {}: {e}", args.metrics_bind_address);
                        return std::process::ExitCode::FAILURE;
                    }
                };
                let (ready, served) = (readiness.clone(), metrics.clone());
                tokio::spawn(async move {
                    if let Err(e) = backup_operator::telemetry::serve::serve(address, ready, served).await {
                        tracing::error!(%address, "serving metrics and health: {e}");
                    }
                });
            }
            let compiler = match std::env::current_exe() {
                Ok(exe) => backup_operator::strategy::compile::Compiler {
                    exe,
                    memory_bytes: backup_operator::strategy::compile::child_memory_bytes(args.plugin_compile_memory_bytes, backup_operator::strategy::compile::container_memory_limit()),
                    timeout: Duration::from_millis(args.plugin_compile_timeout_ms),
                },
                Err(e) => {
                    tracing::error!("finding the operator binary (it compiles plugins in a child process): {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let runtime = StrategyRuntime::new(RuntimeConfig {
                memory_limit_bytes: args.plugin_memory_limit_bytes,
                deadline: Duration::from_millis(args.plugin_timeout_ms),
                max_concurrency: args.plugin_concurrency,
                cache_dir: args.plugin_cache_dir,
                compile_concurrency: args.plugin_compile_concurrency,
                cache_memory_bytes: args.plugin_cache_memory_bytes,
                cache_disk_bytes: args.plugin_cache_disk_bytes,
                compiler: Some(compiler),
                metrics: metrics.clone(),
                plan_policy: PlanPolicy { allow_secret_env: args.allow_secret_env, image_allowlist: args.image_allowlist, ..PlanPolicy::default() },
                ..RuntimeConfig::default()
            });
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("{e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let client = match backup_operator::platform::kube_client::from_env(metrics.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("connecting to Kubernetes: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            // Without the CRD or the permission the watches could only fail and retry: say what is
            // missing instead. An API server that is not up yet is waited for.
            if let Err(e) = backup_operator::platform::startup::check(&client, args.namespace.as_deref()).await {
                tracing::error!("{e}");
                return std::process::ExitCode::FAILURE;
            }
            // The built-ins are compiled before serving, never queued behind a custom plugin.
            if let Err(e) = runtime.preload_builtins().await {
                tracing::error!("compiling the built-in strategies: {e}");
                return std::process::ExitCode::FAILURE;
            }
            readiness.set();
            let leadership = if args.leader_elect {
                // One identity per process: a container restarted in the same pod is a new
                // candidate, and waits for the old lease to expire like any other.
                let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
                let pod = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "backup-operator".into());
                let identity = format!("{pod}-{:08x}", started ^ std::process::id());
                match backup_operator::platform::leader::Leadership::acquire(client.clone(), &args.leader_election_namespace, &args.leader_election_id, &identity).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::error!("{e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            metrics.leader.set(1);
            let snapshots_api = context::has_snapshot_api(&client).await;
            let restores_api = context::has_restore_api(&client).await;
            tracing::info!(snapshots_api, restores_api, "backup-operator starting");
            let notifications = backup_operator::notify::Config {
                rules: backup_operator::notify::AddressRules {
                    allow_cidrs: args.notification_allow_cidr,
                    allow_hosts: args.notification_allow_host,
                    deny_cidrs: backup_operator::notify::address::api_server_addresses().await.into_iter().chain(args.notification_deny_cidr).collect(),
                },
                ..backup_operator::notify::Config::default()
            };
            let tenancy = if args.tenant_impersonation {
                match kube::Config::infer().await {
                    Ok(base) => backup_operator::platform::tenancy::Tenancy::impersonate(base, args.default_service_account, metrics.clone()),
                    Err(e) => {
                        tracing::error!("connecting to Kubernetes: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                backup_operator::platform::tenancy::Tenancy::Operator
            };
            tracing::info!(impersonating = tenancy.impersonating(), "acting for tenants");
            let context = Context::new(client, runtime, args.plugin_dir, args.namespace, snapshots_api, restores_api, args.reconcile_concurrency, metrics.clone())
                .with_tenancy(tenancy)
                .with_notifications(notifications)
                .with_hook_concurrency(usize::from(args.hook_concurrency), usize::from(args.hook_concurrency_per_namespace));
            let run = operator::run(Arc::new(context));
            let ran = match leadership {
                None => run.await,
                Some(mut leadership) => {
                    tokio::select! {
                        ran = run => {
                            leadership.release().await;
                            ran
                        }
                        () = leadership.lost() => {
                            metrics.leader.set(0);
                            tracing::error!("lost the leader lease: exiting, to start again as a follower");
                            return std::process::ExitCode::FAILURE;
                        }
                    }
                }
            };
            if let Err(e) = ran {
                tracing::error!("starting the watches: {e}");
                return std::process::ExitCode::FAILURE;
            }
            tracing::info!("backup-operator stopped");
            std::process::ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::RunArgs;

    /// Every setting of `run` can come from the environment (BACKUP_OPERATOR_<FLAG>), so that the
    /// ConfigMap `backup-operator-config` (envFrom in the shipped Deployments, never applied by
    /// them) holds a cluster's settings through every `make deploy`.
    #[test]
    fn every_run_flag_has_an_environment_variable() {
        let command = RunArgs::command();
        let missing: Vec<String> =
            command.get_arguments().filter(|a| a.get_long().is_some() && a.get_env().is_none()).map(|a| a.get_id().to_string()).collect();
        assert!(missing.is_empty(), "flags without env: {missing:?}");
        let parsed = RunArgs::try_parse_from(["run"]).expect("defaults");
        assert_eq!(parsed.reconcile_concurrency, 48);
    }
}
