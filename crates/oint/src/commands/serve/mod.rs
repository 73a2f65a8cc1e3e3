//! `oint serve`: a long-running relay between the machines that raise notifications
//! (Alertmanager, Grafana, CI, cron, services) and the portal.
//!
//! Each of them would otherwise start `oint` once per alert, with no queue and no shared pace.
//! The relay accepts their webhooks, checks each notification as `notify bulk` checks a row,
//! commits it to a SQLite queue (synced), or to a Redis stream several relays share, and only
//! then answers 202; one delivery loop sends
//! the queue in batches of 50 through the library's bulk sender, paced by the same shared
//! bucket and operating-time budget as every other `oint` process for that portal.
//!
//! Nothing answered 202 is lost: a batch's items are marked `sending` on disk before its
//! request is written, so after `kill -9` the next start knows which items certainly never
//! left (sent), which may have (sent again only when a tag makes that safe, else
//! dead-lettered and shown in `/queue` and the metrics).

mod delivery;
mod http;
mod listen;
mod metrics;
mod queue;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitrix24::{Notice, WaitReason};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, watch};

use crate::alerts::{Route, RouteConfig};
use crate::connect::connect;
use crate::flags::ServeArgs;
use crate::output::{Exit, Failure, Success, note};
use crate::settings::{self, Global, NoticeSink, World};

/// A trouble that lasts is said when it starts and when it ends, not once per request.
#[derive(Default)]
pub struct Once(AtomicBool);

impl Once {
    pub fn say(&self, line: &str) {
        if !self.0.swap(true, Ordering::Relaxed) {
            note(&format!("oint serve: {line}"));
        }
    }

    pub fn clear(&self, line: &str) {
        if self.0.swap(false, Ordering::Relaxed) {
            note(line);
        }
    }
}

/// What `oint serve` was asked to do, resolved.
struct Options {
    listen: String,
    queue: QueueSpec,
    queue_limit: u64,
    routes: BTreeMap<String, Route>,
    token: Option<SecretString>,
    concurrency: usize,
    strict: bool,
}

/// Where the queue is.
enum QueueSpec {
    /// One SQLite file per portal under the data directory.
    Default,
    File(PathBuf),
    /// A stream in Redis that several relays share.
    #[cfg(feature = "redis")]
    Redis(bitrix24::RedisTarget),
}

/// Runs the relay until SIGTERM or Ctrl-C.
pub async fn command(args: ServeArgs, global: &Global) -> Result<Success, Failure> {
    let conn = &args.connection;
    if conn.dry_run {
        return Err(Failure::Usage(
            "--dry-run: does not apply to oint serve; try a notification with oint notify send --dry-run".into(),
        ));
    }
    let (resolved, options) = settings::real_world(|world| {
        let resolved = settings::resolve_connection(conn, &global.transport, world)?;
        let options = options(&args, world, global.strict || resolved.strict)?;
        Ok::<_, String>((resolved, options))
    })
    .map_err(Failure::Usage)?;
    let token_len = options
        .token
        .as_ref()
        .map(|t| t.expose_secret().chars().count());
    let listen = listen_address(&options.listen, token_len).await?;

    let metrics = Arc::new(metrics::Metrics::new());
    let counted = metrics.clone();
    let transport =
        resolved
            .transport
            .clone()
            .with_notices(NoticeSink(Arc::new(move |notice: &Notice| match notice {
                Notice::Wait(w)
                    if matches!(
                        w.reason,
                        WaitReason::RateLimit { .. } | WaitReason::OperatingTime { .. }
                    ) =>
                {
                    counted.waited(w.wait)
                }
                // Backoffs before retries are part of the outcome; a reset state is worth a line.
                Notice::Wait(_) => {}
                other => note(&format!("oint serve: {other}")),
            })));
    let limit = transport.limit();
    // The sandbox's port changes every start; its queue must not.
    let sandbox = matches!(resolved.target, settings::Target::Sandbox { .. });
    let (client, _sandbox) = connect(resolved.target, &transport).await?;
    let portal = client.portal().clone();
    let tags = portal.is_oauth();

    let (ids, inbox) = mpsc::unbounded_channel();
    let (queue, recovery) = match options.queue {
        #[cfg(feature = "redis")]
        QueueSpec::Redis(target) => {
            // The sandbox's port changes every start; its keys must not.
            let portal_name = if sandbox {
                "sandbox".to_string()
            } else {
                portal.authority().to_string()
            };
            let counted = metrics.clone();
            let shared = queue::RedisQueue::open(
                &target,
                &format!("oint:{{{portal_name}}}:relay"),
                tags,
                ids.clone(),
                Box::new(move |n| {
                    counted.unknown.inc_by(n);
                }),
            )
            .await?;
            // What dead relays held is taken over as the relay runs, and said then.
            (queue::Queue::Redis(shared), queue::Recovery::default())
        }
        spec => {
            let path = match spec {
                QueueSpec::File(path) => path,
                _ => default_queue(&portal, sandbox).map_err(Failure::Usage)?,
            };
            let (queue, recovery) =
                queue::SqliteQueue::open(&path, tags).map_err(Failure::Usage)?;
            (queue::Queue::Sqlite(queue), recovery)
        }
    };
    let queue = Arc::new(queue);
    // Before the address is printed: a SIGTERM right after it must find the handler.
    let mut signals = Signals::install();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Usage(format!("--listen: cannot listen on {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Local(format!("--listen: {e}")))?;
    // The first line of stdout, for scripts and tests that listen on port 0.
    crate::output::write_stdout(format!("listening on http://{local}\n").as_bytes())
        .map_err(Failure::Local)?;
    note(&format!(
        "oint serve: queue {} ({} pending{}{})",
        queue.shown(),
        if queue.feeds_itself() {
            queue.pending()
        } else {
            recovery.queued.len() as u64
        },
        if recovery.resumed > 0 {
            format!(", {} resumed after an interrupted send", recovery.resumed)
        } else {
            String::new()
        },
        if recovery.unknown > 0 {
            format!(
                ", {} dead-lettered: they were being sent when the relay stopped and may have arrived",
                recovery.unknown
            )
        } else {
            String::new()
        },
    ));
    metrics.unknown.inc_by(recovery.unknown);
    if !tags && !options.routes.is_empty() {
        note(
            "oint serve: over a webhook the portal drops tags: a re-fired alert is a new notification, and its resolve one more (use an OAuth application to have them replace each other)",
        );
    }

    for id in recovery.queued {
        let _ = ids.send(id);
    }
    let (stop_tx, stop) = watch::channel(false);
    let relay = Arc::new(http::Relay {
        queue: queue.clone(),
        metrics: metrics.clone(),
        ids: ids.clone(),
        token: options.token,
        queue_limit: options.queue_limit,
        strict: options.strict,
        portal,
        tags,
        routes: options.routes,
        drain_per_second: limit.rate * 50.0,
        draining: AtomicBool::new(false),
        queue_errors: Once::default(),
    });
    let server = {
        let mut stop = stop.clone();
        let served = listen::serve(listener, http::router(relay.clone()), stop.clone());
        // Requests still open some seconds after the stop are cut: a client that never
        // finishes its request must not keep the relay from exiting.
        async move {
            tokio::select! {
                () = served => {}
                () = async {
                    let _ = stop.wait_for(|s| *s).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => {}
            }
        }
    };
    let delivery = delivery::run(
        &client,
        delivery::Delivery {
            queue: queue.clone(),
            metrics: metrics.clone(),
            ids: inbox,
            again: ids,
            stop,
            concurrency: options.concurrency,
        },
    );
    let stopping = async {
        signals.next().await;
        note(
            "oint serve: stopping: no new notifications; finishing the batches in flight (a second signal stops at once)",
        );
        relay.draining.store(true, Ordering::Relaxed);
        queue.stop_feeding();
        let _ = stop_tx.send(true);
        signals.next().await;
    };
    tokio::select! {
        ((), ()) = async { tokio::join!(server, delivery) } => {}
        () = stopping => {
            note("oint serve: stopped at once; batches in flight are settled at the next start by the restart rules");
            queue.close();
            return Ok(Success::Finished(Exit::Failed));
        }
    }
    drop(relay);
    queue.close();
    note(&format!(
        "oint serve: stopped; {} pending in {}",
        queue.pending(),
        queue.shown()
    ));
    Ok(Success::Finished(Exit::Ok))
}

fn options(args: &ServeArgs, world: &World<'_>, strict: bool) -> Result<Options, String> {
    let token = match (&args.auth_token_file, world.var("OINT_SERVE_TOKEN")) {
        (Some(path), _) => Some(settings::read_secret_file(
            &world.expand(path),
            "--auth-token-file",
        )?),
        (None, Some(token)) => Some(crate::secrets::clean_secret(&token, "OINT_SERVE_TOKEN")?),
        (None, None) => None,
    }
    .map(SecretString::from);
    let mut routes = BTreeMap::new();
    if let Some(serve) = settings::serve_section(world)? {
        for (key, value) in serve {
            let toml::Value::Table(table) = value else {
                return Err(format!(
                    "config file: [serve] takes only routes ([serve.routes.NAME]), not {key:?}"
                ));
            };
            if key != "routes" {
                return Err(format!(
                    "config file: [serve] takes only routes ([serve.routes.NAME]), not {key:?}"
                ));
            }
            for (name, route) in table {
                let config: RouteConfig = route.try_into().map_err(|e: toml::de::Error| {
                    format!("config file: [serve.routes.{name}]: {}", e.message())
                })?;
                let route = Route::new(&name, config)
                    .map_err(|e| format!("config file: [serve.routes.{name}]: {e}"))?;
                routes.insert(name, route);
            }
        }
    }
    for spec in &args.routes {
        let (name, route) = route_flag(spec)?;
        // The command line wins over the file, as everywhere.
        routes.insert(name, route);
    }
    let queue = match args.queue.as_deref() {
        None => QueueSpec::Default,
        Some(q) => match q.to_str().filter(|q| is_redis_url(q)) {
            Some(url) => redis_queue(url, world)?,
            None => QueueSpec::File(world.expand(q)),
        },
    };
    Ok(Options {
        listen: args.listen.clone(),
        queue,
        queue_limit: args.queue_limit,
        routes,
        token,
        concurrency: args.concurrency as usize,
        strict,
    })
}

/// `--queue redis://…`: the password from the URL or, as for `--limit-store`,
/// OINT_LIMIT_STORE_PASSWORD(_FILE).
#[cfg(feature = "redis")]
fn redis_queue(url: &str, world: &World<'_>) -> Result<QueueSpec, String> {
    let password = settings::store_password(world)?.map(SecretString::from);
    bitrix24::RedisTarget::parse(url, password)
        .map(QueueSpec::Redis)
        .map_err(|e| format!("--queue: {}", settings::transport::message(e)))
}

/// Without Redis support a Redis URL is refused, rather than taken for a file name.
#[cfg(not(feature = "redis"))]
fn redis_queue(url: &str, _world: &World<'_>) -> Result<QueueSpec, String> {
    Err(format!(
        "--queue: a Redis queue ({}) needs an oint built with the `redis` feature; rebuild with it, or pass a file path for the SQLite queue",
        url.split_once("://").map_or("redis", |(scheme, _)| scheme)
    ))
}

/// `redis://` and `rediss://`, whatever the letter case.
fn is_redis_url(queue: &str) -> bool {
    let lower = queue.to_ascii_lowercase();
    lower.starts_with("redis://") || lower.starts_with("rediss://")
}

/// `--route NAME=USER[,USER…]`: a route with the default template.
fn route_flag(spec: &str) -> Result<(String, Route), String> {
    let usage = || format!("--route: expected NAME=USER[,USER…] such as ops=1,10, got {spec:?}");
    let (name, users) = spec.split_once('=').ok_or_else(usage)?;
    let users = users
        .split(',')
        .map(|u| u.trim().parse::<u64>().ok().filter(|u| *u > 0))
        .collect::<Option<Vec<u64>>>()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("--route {name}: users are user IDs (whole numbers of 1 or more), separated by commas"))?;
    let config: RouteConfig = serde_json::from_value(serde_json::json!({ "users": users }))
        .map_err(|e| format!("--route: {e}"))?;
    let route = Route::new(name, config).map_err(|e| format!("--route: {e}"))?;
    Ok((name.to_string(), route))
}

/// Where the queue lives by default: one file per portal under the data directory.
fn default_queue(portal: &bitrix24::Portal, sandbox: bool) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("OINT_STATE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::data_local_dir()
            .ok_or("cannot find a data directory for the queue; pass --queue FILE")?
            .join("oint"),
    };
    let name = if sandbox {
        "sandbox".to_string()
    } else {
        crate::files::file_name_for(portal.authority())
    };
    Ok(dir.join("serve").join(format!("{name}.sqlite3")))
}

/// The address to bind; anything but loopback only with a token, since whoever reaches the
/// relay can notify anyone on the portal.
async fn listen_address(listen: &str, token_len: Option<usize>) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| {
            Failure::Usage(format!(
                "--listen: expected HOST:PORT such as 127.0.0.1:9380, got {listen:?} ({e})"
            ))
        })?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| Failure::Usage(format!("--listen: {listen:?} names no address")))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        match token_len {
            None => {
                return Err(Failure::Usage(format!(
                    "--listen: {listen} is reachable from other machines; give the relay a token first (--auth-token-file FILE or OINT_SERVE_TOKEN), or listen on 127.0.0.1"
                )));
            }
            Some(n) if n < MIN_TOKEN => {
                return Err(Failure::Usage(format!(
                    "--auth-token-file: the token is {n} characters; a relay reachable from other machines needs at least {MIN_TOKEN} (e.g. openssl rand -hex 32)"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(addr)
}

/// The shortest token for a relay reachable from other machines.
const MIN_TOKEN: usize = 16;

/// How long open requests may take to finish after a stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGTERM or Ctrl-C (SIGINT), handled from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    term: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate())
                    .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                    .ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = self.term.as_mut() {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_redis_url;

    #[test]
    fn redis_urls_are_told_from_queue_files() {
        assert!(is_redis_url("redis://127.0.0.1:6379/0"));
        assert!(is_redis_url("REDISS://cache:6380/1"));
        assert!(!is_redis_url("/var/lib/oint/queue.db"));
        assert!(!is_redis_url("redis.db"));
    }
}
