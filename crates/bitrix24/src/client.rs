//! The transport: one POST per call, JSON in, JSON out, errors typed.
//!
//! Every call goes through [`Client::execute`], so there is one place that builds URLs, adds
//! the `auth` field, logs (with secrets masked) and turns answers into [`Answer`] or [`Error`].
//! Redirects are not followed: a redirected POST would lose its body and could carry the
//! webhook secret to another host, so a 3xx is reported instead.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::answer::Answer;
use crate::error::{ApiError, Error, ErrorCode, json_kind};
use crate::limits::{
    NOTICE_THRESHOLD, Notice, OperatingBudget, Pacer, RateLimit, Reservation, WaitNotice,
    WaitReason, unix_now,
};
use crate::notify::NotifyHandler;
use crate::php;
use crate::portal::{HttpPolicy, MASK, Portal};
use crate::retry::{self, Decision, MAX_WAIT, Outcome, RetryPolicy, Safety};

/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for a whole call. The cloud portal stops a request after 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(65);
/// The largest answer read from the portal. A page of 50 notifications is well under 1 MiB;
/// past this the body is abandoned (the connection dropped) and the call fails.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// One REST call: a method name and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    method: String,
    params: Map<String, Value>,
}

impl Request {
    /// A call of `method` with no parameters.
    pub fn new(method: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            params: Map::new(),
        }
    }

    /// Adds (or replaces) a parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<Value>) -> Request {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The method name, e.g. `im.notify.personal.add`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The parameters, in the order they will be sent.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }
}

/// What a request looks like on the wire, with secrets masked: for `--test` and logs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Preview {
    /// Always `POST`.
    pub http_method: &'static str,
    /// The endpoint, webhook secret masked.
    pub url: String,
    /// The JSON body, `auth` masked.
    pub body: Value,
}

/// Parameter names that carry credentials whoever put them in the request.
const SECRET_PARAMS: &[&str] = &[
    "auth",
    "access_token",
    "refresh_token",
    "client_secret",
    "application_token",
    "password",
];

/// Replaces the value of every credential-named key, at any depth, with [`MASK`].
fn mask_secret_params(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) {
            *value = Value::String(MASK.into());
        } else {
            mask_secret_value(value);
        }
    }
}

fn mask_secret_value(value: &mut Value) {
    match value {
        Value::Object(map) => mask_secret_params(map),
        Value::Array(items) => items.iter_mut().for_each(mask_secret_value),
        _ => {}
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    token: Option<secrecy::SecretString>,
    http_policy: HttpPolicy,
    connect_timeout: Duration,
    timeout: Duration,
    pacer: Pacer,
    retry: RetryPolicy,
    operating_budget: f64,
    oauth: Option<crate::oauth::OAuthConfig>,
    notice: Option<NoticeHook>,
    notice_threshold: Duration,
}

/// The caller's [`ClientBuilder::on_notice`] function.
#[derive(Clone)]
struct NoticeHook(Arc<dyn Fn(&Notice) + Send + Sync>);

impl std::fmt::Debug for NoticeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeHook")
    }
}

impl ClientBuilder {
    /// Starts from a webhook URL, or a portal domain to be used with [`ClientBuilder::token`].
    pub fn new(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            http_policy: HttpPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            pacer: Pacer::local(RateLimit::STANDARD),
            retry: RetryPolicy::default(),
            operating_budget: OperatingBudget::CLOUD,
            oauth: None,
            notice: None,
            notice_threshold: NOTICE_THRESHOLD,
        }
    }

    /// Authenticates with an OAuth access token instead of a webhook.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into().into());
        self
    }

    /// Authenticates as an OAuth application whose access token is refreshed when it expires
    /// (see [`OAuthConfig`](crate::OAuthConfig)); `url` is then the portal domain.
    pub fn oauth(mut self, config: crate::oauth::OAuthConfig) -> ClientBuilder {
        self.oauth = Some(config);
        self
    }

    /// Allows plain `http://` for hosts that are not loopback.
    pub fn http_policy(mut self, policy: HttpPolicy) -> ClientBuilder {
        self.http_policy = policy;
        self
    }

    /// Time allowed to open a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole call.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// The portal's rate limit, kept on this side so requests wait instead of being refused.
    /// Default: [`RateLimit::STANDARD`], in this process.
    pub fn rate_limit(mut self, limit: RateLimit) -> ClientBuilder {
        self.pacer = Pacer::local(limit);
        self
    }

    /// Where the rate limit's state lives: [`Pacer::Shared`] makes every process that uses the
    /// same file share one bucket, as the portal does. [`Pacer::Off`] sends without waiting.
    pub fn pacer(mut self, pacer: Pacer) -> ClientBuilder {
        self.pacer = pacer;
        self
    }

    /// Attempts, backoff and deadline (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> ClientBuilder {
        self.retry = policy;
        self
    }

    /// Calls `hook` when a wait longer than [`NOTICE_THRESHOLD`] (or
    /// [`notice_threshold`](ClientBuilder::notice_threshold)) starts (for the rate limit, an
    /// operating-time pause, a backoff before a retry: once per wait, with its reason and
    /// length) and when a damaged shared rate-limit state is reset. Without a hook, notices go
    /// to `tracing` at `info` level. A notice's `Display` is one line with no secret in it.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), bitrix24::Error> {
    /// let client = bitrix24::Client::builder("https://portal.bitrix24.com/rest/1/SECRET/")
    ///     .on_notice(|notice| eprintln!("{notice}"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn on_notice(mut self, hook: impl Fn(&Notice) + Send + Sync + 'static) -> ClientBuilder {
        self.notice = Some(NoticeHook(Arc::new(hook)));
        self
    }

    /// Waits longer than this are announced to the [`on_notice`](ClientBuilder::on_notice)
    /// hook (default [`NOTICE_THRESHOLD`]). [`Duration::ZERO`] announces every wait, for a
    /// long-running service that counts them rather than prints them.
    pub fn notice_threshold(mut self, threshold: Duration) -> ClientBuilder {
        self.notice_threshold = threshold;
        self
    }

    /// Seconds of server time each method may use per 10 minutes (default 480, the cloud's).
    pub fn operating_budget(mut self, seconds: f64) -> ClientBuilder {
        self.operating_budget = seconds;
        self
    }

    /// Normalises the URL (see [`Portal::parse`]) and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        use secrecy::ExposeSecret;
        let token = self.token.as_ref().map(|t| t.expose_secret());
        let portal = match (&self.oauth, token) {
            (None, _) => Portal::parse(&self.url, token, self.http_policy)?,
            (Some(_), None) => Portal::parse_oauth(&self.url, self.http_policy)?,
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "token",
                    "give the access token through OAuthConfig::access_token when using OAuth",
                ));
            }
        };
        let oauth = self
            .oauth
            .map(|config| crate::oauth::OAuth::new(config, self.http_policy))
            .transpose()?;
        // reqwest is built without a crypto provider; ring starts in microseconds, where
        // aws-lc-rs spent most of a one-shot call seeding its entropy source. A provider the
        // application installed first is kept (install_default then fails, harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("bitrix24-rs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Transport {
                url: portal.to_string(),
                message: format!("could not set up HTTP: {}", error_chain(&e)),
                timeout: false,
                connect: true,
            })?;
        // Never the webhook's secret: its user stands for it (two webhooks of one user then
        // share figures, which can only pause early, never trip the portal).
        let operating_scope = match (&oauth, portal.webhook_user()) {
            (Some(oauth), _) => format!("app:{}", oauth.client_id()),
            (None, Some(user)) => format!("webhook:{user}"),
            (None, None) => "token".to_string(),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                operating_scope,
                portal,
                http,
                pacer: self.pacer,
                retry: self.retry,
                operating: OperatingBudget::new(self.operating_budget),
                oauth,
                notice: self.notice,
                notice_threshold: self.notice_threshold,
                pace_turn: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// An async Bitrix24 client. Cheap to clone; clones share connections.
///
/// ```no_run
/// # async fn run() -> Result<(), bitrix24::Error> {
/// let client = bitrix24::Client::builder("https://portal.bitrix24.com/rest/1/SECRET/").build()?;
/// let id = client.notify().personal(10, "Deploy finished").send().await?;
/// println!("notification {id:?}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    portal: Portal,
    http: reqwest::Client,
    pacer: Pacer,
    retry: RetryPolicy,
    operating: OperatingBudget,
    /// Whose operating time this client spends, in the limit store's field names: the portal
    /// budgets each application and each webhook apart.
    operating_scope: String,
    /// Refreshing OAuth tokens, when built with [`ClientBuilder::oauth`].
    oauth: Option<crate::oauth::OAuth>,
    notice: Option<NoticeHook>,
    notice_threshold: Duration,
    /// One task of this process at a time asks a shared bucket for a slot that is not free
    /// yet, in turn; the others queue here instead of polling the file together.
    pace_turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("portal", &self.inner.portal)
            .finish()
    }
}

impl Client {
    /// Starts building a client for a webhook URL or portal domain.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// The portal this client talks to.
    pub fn portal(&self) -> &Portal {
        &self.inner.portal
    }

    /// The retry policy, which bulk sends also use for commands to send again.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The notification methods (`im.notify.*`).
    pub fn notify(&self) -> NotifyHandler<'_> {
        NotifyHandler::new(self)
    }

    /// Calls any method with JSON parameters: the escape hatch for methods without a typed call.
    ///
    /// ```no_run
    /// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
    /// let answer = client.call("server.time", serde_json::json!({})).await?;
    /// println!("{}", answer.result);
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, method: &str, params: Value) -> Result<Answer<Value>, Error> {
        let params = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(Error::invalid(
                    "params",
                    format!("must be a JSON object, not {}", json_kind(&other)),
                ));
            }
        };
        self.execute(&Request {
            method: method.to_string(),
            params,
        })
        .await
    }

    /// Sends a request and types its `result`.
    pub async fn send<T: DeserializeOwned>(&self, request: &Request) -> Result<Answer<T>, Error> {
        let answer = self.execute(request).await?;
        Answer::from_raw(answer.raw).map_err(|e| Error::Decode {
            status: 200,
            reason: format!(
                "a result this client cannot read for {}: {e}",
                request.method
            ),
            body: String::new(),
        })
    }

    /// Shows what [`Client::execute`] would send, secrets masked, without sending it: the
    /// token this client adds, and any parameter named like a credential (`auth`,
    /// `access_token`, `refresh_token`, `client_secret`, …) at any depth.
    pub fn preview(&self, request: &Request) -> Preview {
        let portal = &self.inner.portal;
        let mut body = request.params.clone();
        mask_secret_params(&mut body);
        if portal.is_oauth() {
            body.insert("auth".into(), Value::String(MASK.into()));
        }
        Preview {
            http_method: "POST",
            url: portal.masked_endpoint(&request.method),
            body: Value::Object(body),
        }
    }

    /// Sends a request; the answer's `result` stays raw JSON.
    ///
    /// Each attempt waits for the rate limit and for the method's operating-time budget, then
    /// goes out once; failures are retried as [`retry::decide`] says. A write that may have
    /// run but cannot safely be sent again ends in [`Error::OutcomeUnknown`].
    pub async fn execute(&self, request: &Request) -> Result<Answer<Value>, Error> {
        self.execute_observed(request, &|| Ok(()), &|| ()).await
    }

    /// [`Client::execute`], calling `before_write` each time an attempt has taken its
    /// rate-limit slot and is about to be written; an error from it ends the call there, that
    /// attempt unsent. A bulk journal records `sending` at that moment. `not_run` is called
    /// after an attempt that certainly did not run (no connection, refused by a limit before
    /// running, an expired token), so that the journal can take the record back.
    pub(crate) async fn execute_observed(
        &self,
        request: &Request,
        before_write: &(dyn Fn() -> Result<(), Error> + Send + Sync),
        not_run: &(dyn Fn() + Send + Sync),
    ) -> Result<Answer<Value>, Error> {
        check_method(&request.method)?;
        let inner = &*self.inner;
        let policy = &inner.retry;
        let safety = safety_of(request, inner.portal.is_oauth());
        let billed_to = OperatingBudget::key(&request.method);
        let started = std::time::Instant::now();
        // What any one wait may take: the rest of the deadline, and never more than MAX_WAIT.
        let left = || {
            policy
                .deadline
                .saturating_sub(started.elapsed())
                .min(MAX_WAIT)
        };
        let mut backoff = Duration::ZERO;
        let mut why = "first attempt";
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let mut operating_wait = Duration::ZERO;
            // Round again while figures other hosts shared pause the method: the slot taken
            // for it was given back, and the pause is waited like this process's own.
            let rate_wait = loop {
                if let Some(pause) = inner.operating.pause(&billed_to, unix_now()) {
                    let wait =
                        Duration::try_from_secs_f64(pause.wait.max(0.0)).unwrap_or(Duration::MAX);
                    if wait > left() {
                        return Err(Error::Limited {
                            method: request.method.clone(),
                            wait,
                            reason: format!(
                                "its operating-time budget is spent ({:.0} s used) until the portal resets it",
                                pause.operating
                            ),
                        });
                    }
                    self.wait_notice(
                        request,
                        attempt,
                        WaitReason::OperatingTime {
                            used: pause.operating,
                        },
                        wait,
                    );
                    tokio::time::sleep(wait).await;
                    operating_wait = operating_wait.saturating_add(wait);
                }
                if let Some(waited) = self
                    .wait_for_rate(request, &billed_to, attempt, &left)
                    .await?
                {
                    break waited;
                }
            };
            tracing::debug!(
                target: "bitrix24",
                method = %request.method,
                attempt,
                backoff_ms = backoff.as_millis() as u64,
                rate_wait_ms = rate_wait.as_millis() as u64,
                operating_wait_ms = operating_wait.as_millis() as u64,
                why,
                "attempt"
            );
            // The access token for this attempt, refreshed ahead of expiry.
            let auth = self.auth_token().await?;
            before_write()?;
            let error = match self.execute_once(request, auth.as_ref()).await {
                Ok(answer) => {
                    if let Some(time) = &answer.time {
                        inner.operating.observe(
                            &billed_to,
                            time.operating,
                            time.operating_reset_at,
                        );
                        self.share_if_paused(&billed_to).await;
                    }
                    return Ok(answer);
                }
                Err(error) => error,
            };
            // An expired token: refresh once (single-flight, across processes too) and go
            // round again, so the resend is paced like any other request.
            let outcome = outcome_of(&error);
            if crate::oauth::is_expired(&error)
                || matches!(
                    outcome,
                    Outcome::NotConnected | Outcome::QueryLimit | Outcome::OperationTimeLimit
                )
            {
                not_run();
            }
            if !refreshed
                && crate::oauth::is_expired(&error)
                && let (Some(oauth), Some(refused)) = (&inner.oauth, &auth)
            {
                oauth.after_expired(&inner.http, refused).await?;
                refreshed = true;
                backoff = Duration::ZERO;
                why = "the access token had expired and was refreshed";
                continue;
            }
            match outcome {
                Outcome::QueryLimit => inner.pacer.saturate_async(&|n| self.notice(n)).await?,
                Outcome::OperationTimeLimit => {
                    inner.operating.blocked(&billed_to, unix_now());
                    self.share_if_paused(&billed_to).await;
                }
                _ => {}
            }
            match retry::decide(safety, outcome, attempt, policy) {
                Decision::Fail => return Err(error),
                Decision::OutcomeUnknown => {
                    return Err(Error::OutcomeUnknown {
                        method: request.method.clone(),
                        attempts: attempt,
                        cause: Box::new(error),
                    });
                }
                Decision::Retry => {
                    backoff = policy.backoff(attempt, fastrand::f64()).min(MAX_WAIT);
                    if backoff > left() {
                        return Err(error);
                    }
                    why = retry::describe(outcome);
                    tracing::debug!(target: "bitrix24", method = %request.method, attempt, error = %error, why, "will retry");
                    let reason = match outcome {
                        Outcome::QueryLimit => WaitReason::QueryLimit,
                        after => WaitReason::Retry { after },
                    };
                    self.wait_notice(request, attempt.saturating_add(1), reason, backoff);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// The limit store's field for the figures of `billed_to`.
    fn operating_field(&self, billed_to: &str) -> String {
        format!("{}|{billed_to}", self.inner.operating_scope)
    }

    /// Shares this process's figures for `billed_to` when they pause it, so that the other
    /// hosts pause before they send too. Figures short of a pause stay here: sharing them on
    /// every answer would cost a round trip each and tell nobody anything they must act on.
    async fn share_if_paused(&self, billed_to: &str) {
        let inner = &*self.inner;
        if !inner.pacer.shares_operating() || inner.operating.pause(billed_to, unix_now()).is_none()
        {
            return;
        }
        if let Some(usage) = inner.operating.usage(billed_to) {
            inner
                .pacer
                .share_async(&self.operating_field(billed_to), usage, &|n| self.notice(n))
                .await;
        }
    }

    /// Waits for a slot in the rate limit's bucket; returns how long that took. A wait that
    /// would end after `left()` ends the request instead, and gives the slot back. `None`
    /// when the figures other hosts shared with the reservation pause `billed_to`: the slot
    /// is given back, and the caller waits the pause.
    async fn wait_for_rate(
        &self,
        request: &Request,
        billed_to: &str,
        attempt: u32,
        left: &(dyn Fn() -> Duration + Sync),
    ) -> Result<Option<Duration>, Error> {
        let inner = &*self.inner;
        let shared = inner.pacer.is_shared();
        let mut turn = if shared {
            Some(inner.pace_turn.lock().await)
        } else {
            None
        };
        let field = if inner.pacer.shares_operating() {
            self.operating_field(billed_to)
        } else {
            String::new()
        };
        let mut waited = Duration::ZERO;
        let mut told = false;
        loop {
            let (reservation, shared_figures) = inner
                .pacer
                .reserve_async(&field, &|n| self.notice(n))
                .await?;
            let (wait, booked) = match reservation {
                Reservation::Go(wait) => (wait, true),
                Reservation::Later(wait) => (wait, false),
            };
            if let Some(usage) = shared_figures {
                inner.operating.adopt(billed_to, usage);
                if inner.operating.pause(billed_to, unix_now()).is_some() {
                    if booked {
                        // Not sent, so not counted; a failure here only leaves the bucket fuller.
                        let _ = inner.pacer.release_async(&|n| self.notice(n)).await;
                    }
                    return Ok(None);
                }
            }
            if wait > left() {
                if booked {
                    // Not sent, so not counted; a failure here only leaves the bucket fuller.
                    let _ = inner.pacer.release_async(&|n| self.notice(n)).await;
                }
                let limit = inner.pacer.limit().unwrap_or(RateLimit::STANDARD);
                return Err(Error::Limited {
                    method: request.method.clone(),
                    wait: waited.saturating_add(wait),
                    reason: format!(
                        "the rate limit ({} requests per second, burst {}) would hold it past its deadline",
                        limit.rate, limit.burst
                    ),
                });
            }
            if !told && (wait > self.inner.notice_threshold) {
                told = true;
                self.wait_notice(request, attempt, WaitReason::RateLimit { shared }, wait);
            }
            if booked {
                // The slot is ours: the next task may ask while this one sleeps.
                turn.take();
            }
            tokio::time::sleep(wait).await;
            waited = waited.saturating_add(wait);
            if booked {
                return Ok(Some(waited));
            }
        }
    }

    fn wait_notice(&self, request: &Request, attempt: u32, reason: WaitReason, wait: Duration) {
        if wait > self.inner.notice_threshold {
            self.notice(&Notice::Wait(WaitNotice {
                reason,
                wait,
                method: request.method.clone(),
                attempt,
            }));
        }
    }

    fn notice(&self, notice: &Notice) {
        match &self.inner.notice {
            Some(hook) => (hook.0)(notice),
            None => tracing::info!(target: "bitrix24", "{notice}"),
        }
    }

    /// The token to send as `auth`: the OAuth client's current one, a fixed one, or none for
    /// webhooks.
    async fn auth_token(&self) -> Result<Option<crate::oauth::AuthToken>, Error> {
        match &self.inner.oauth {
            Some(oauth) => oauth.access_token(&self.inner.http).await.map(Some),
            None => Ok(self
                .inner
                .portal
                .token()
                .map(crate::oauth::AuthToken::fixed)),
        }
    }

    /// One attempt: POST, read, type the answer.
    async fn execute_once(
        &self,
        request: &Request,
        auth: Option<&crate::oauth::AuthToken>,
    ) -> Result<Answer<Value>, Error> {
        let portal = &self.inner.portal;
        let masked_url = portal.masked_endpoint(&request.method);
        let mut body = request.params.clone();
        if let Some(token) = auth {
            body.insert("auth".into(), Value::String(token.expose().to_string()));
        }
        let redact = |text: &str| match auth {
            Some(token) => token.redact(&portal.redact(text)),
            None => portal.redact(text),
        };
        tracing::debug!(
            target: "bitrix24",
            method = %request.method,
            url = %masked_url,
            body = %serde_json::to_string(&self.preview(request).body).unwrap_or_default(),
            "sending request"
        );

        let transport = |e: reqwest::Error| Error::Transport {
            url: masked_url.clone(),
            message: redact(&error_chain(&e)),
            timeout: e.is_timeout(),
            connect: e.is_connect(),
        };
        let response = self
            .inner
            .http
            .post(portal.endpoint(&request.method))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(serde_json::to_vec(&body).expect("a JSON map always serialises"))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(redact);
        let Some(bytes) = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(transport)?
        else {
            // A 2xx status: the call may have run (a write then ends as outcome unknown).
            return Err(Error::Decode {
                status,
                reason: format!(
                    "an answer larger than {} MiB; stopped reading",
                    MAX_ANSWER_BYTES >> 20
                ),
                body: String::new(),
            });
        };
        let text = redact(&String::from_utf8_lossy(&bytes));
        tracing::debug!(target: "bitrix24", method = %request.method, status, body = %text, "received answer");

        if (300..400).contains(&status) {
            return Err(Error::Decode {
                status,
                reason: format!(
                    "a redirect to {}; the portal may have moved: use its new address",
                    location.as_deref().unwrap_or("an unknown place")
                ),
                body: text,
            });
        }
        let json: Value = match serde_json::from_str(&text) {
            Ok(json) => json,
            Err(_) => {
                let reason = if text.trim().is_empty() {
                    "an empty body".into()
                } else {
                    "a body that is not JSON".into()
                };
                return Err(Error::Decode {
                    status,
                    reason,
                    body: text,
                });
            }
        };
        if let Some(code) = json.get("error") {
            let code = match code {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let description = json
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Err(ApiError {
                code: code.as_str().into(),
                description,
                status,
                body: json,
            }
            .into());
        }
        if json.get("result").is_none() {
            return Err(Error::Decode {
                status,
                reason: "JSON that has neither result nor error".into(),
                body: text,
            });
        }
        Answer::from_raw(json).map_err(|e| Error::Decode {
            status,
            reason: format!("an unreadable answer: {e}"),
            body: text,
        })
    }
}

/// How an attempt's error bears on retrying.
fn outcome_of(error: &Error) -> Outcome {
    match error {
        Error::Api(api) => match api.code {
            ErrorCode::QueryLimitExceeded => Outcome::QueryLimit,
            ErrorCode::OperationTimeLimit => Outcome::OperationTimeLimit,
            _ if api.status >= 500 => Outcome::ServerError,
            _ => Outcome::Refused,
        },
        Error::Transport { connect: true, .. } => Outcome::NotConnected,
        Error::Transport { .. } => Outcome::NoAnswer,
        // A garbled 2xx or a proxy's 5xx page: the call may have run.
        Error::Decode { status, .. } if *status >= 500 || *status < 300 => Outcome::ServerError,
        _ => Outcome::Refused,
    }
}

/// Methods whose repetition changes nothing.
const REPEATABLE_WRITES: &[&str] = &[
    "im.notify.read",
    "im.notify.read.list",
    "im.notify.read.all",
    "im.notify.delete",
];
/// Methods that only read, beyond the `*.get`/`*.list`-style names.
const READS: &[&str] = &[
    "server.time",
    "profile",
    "methods",
    "method.get",
    "scope",
    "user.current",
    "app.info",
];
pub(crate) const NOTIFICATION_ADDS: &[&str] = &[
    "im.notify",
    "im.notify.personal.add",
    "im.notify.system.add",
];

/// Whether `request` may be sent twice without harm.
///
/// A notification with a tag may, but only from an OAuth application: the portal replaces an
/// earlier notification with the same tag only for apps and drops the tag of a webhook call.
/// A batch may when every command in it may. `oauth` says whether the caller is an OAuth
/// application.
pub fn safety_of(request: &Request, oauth: bool) -> Safety {
    let method = request.method.trim().to_ascii_lowercase();
    // The portal upper-cases parameter names, so any spelling of TAG counts; the last wins.
    let param = |key: &str| php::upper_get(&request.params, key).map(php::truthy);
    method_safety(&method, &param, oauth, &request.params)
}

fn method_safety(
    method: &str,
    param: &dyn Fn(&str) -> Option<bool>,
    oauth: bool,
    params: &Map<String, Value>,
) -> Safety {
    let repeatable = if NOTIFICATION_ADDS.contains(&method) {
        oauth && param("TAG").unwrap_or(false)
    } else if method == "batch" {
        batch_commands(params).all(|(m, query)| {
            // PHP's parse_str keeps the last of repeated keys.
            let pairs = || query.iter().map(|(k, v)| (k, v.as_str()));
            let sub_param = |key: &str| php::upper_get(pairs(), key).map(php::truthy_str);
            // The portal refuses a nested batch; never judge one repeatable.
            m != "batch" && method_safety(&m, &sub_param, oauth, &Map::new()) == Safety::Repeatable
        })
    } else {
        REPEATABLE_WRITES.contains(&method)
            || READS.contains(&method)
            || [".get", ".list", ".fields", ".search", ".current"]
                .iter()
                .any(|s| method.ends_with(s))
            || method.ends_with(".schema.get")
    };
    if repeatable {
        Safety::Repeatable
    } else {
        Safety::Once
    }
}

/// The `(method, top-level query pairs)` of each `cmd` of a batch.
fn batch_commands(
    params: &Map<String, Value>,
) -> impl Iterator<Item = (String, Vec<(String, String)>)> + '_ {
    let cmd = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("cmd"))
        .map(|(_, v)| v);
    let commands: Vec<&Value> = match cmd {
        Some(Value::Object(map)) => map.values().collect(),
        Some(Value::Array(list)) => list.iter().collect(),
        _ => Vec::new(),
    };
    commands.into_iter().map(|c| {
        let text = c.as_str().unwrap_or_default();
        let (method, query) = text.split_once('?').unwrap_or((text, ""));
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        (method.trim().to_ascii_lowercase(), pairs)
    })
}

/// Checks a method name before it becomes part of a URL: ASCII letters, digits, `_` and
/// dot-separated non-empty segments (`im.notify.personal.add`, `batch`, `user.current`),
/// not starting with `_`. Anything else (`/`, `..`, `?`, `%`, spaces) could leave `/rest/`
/// and carry the webhook secret or the token to another path of the portal's host; the portal
/// has no method by such a name anyway.
pub fn check_method(method: &str) -> Result<(), Error> {
    let invalid = |why: &str| {
        Error::invalid(
            "method",
            format!(
                "{why}; a method name is dot-separated letters, digits and _, e.g. im.notify.personal.add"
            ),
        )
    };
    if method.is_empty() {
        return Err(invalid("is empty"));
    }
    if method.len() > 200 {
        return Err(invalid("is longer than 200 characters"));
    }
    if let Some(c) = method
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_'))
    {
        return Err(invalid(&if c.is_ascii_graphic() {
            format!("contains {c:?}")
        } else {
            "contains a space, control or non-ASCII character".to_string()
        }));
    }
    if method.starts_with('_') || method.starts_with('.') {
        return Err(invalid("starts with _ or ."));
    }
    if method.split('.').any(str::is_empty) {
        return Err(invalid("has an empty segment (.. or a trailing .)"));
    }
    Ok(())
}

/// Reads a body of at most `cap` bytes as it streams in; `None` when it is longer, in which
/// case reading stops there and dropping the response closes the connection.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A reqwest error with its causes, e.g. "error sending request: tcp connect error: Connection refused".
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod safety_tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, params: Value) -> Request {
        let Value::Object(params) = params else {
            unreachable!()
        };
        Request {
            method: method.into(),
            params,
        }
    }

    #[test]
    fn safety_table() {
        use Safety::*;
        let batch = |cmds: Value| req("batch", json!({"cmd": cmds}));
        let table = [
            (
                req("im.notify.personal.add", json!({"TAG": "t"})),
                true,
                Repeatable,
            ),
            (
                req("im.notify.personal.add", json!({"TAG": "t"})),
                false,
                Once,
            ),
            (
                req("im.notify.personal.add", json!({"TAG": "0"})),
                true,
                Once,
            ),
            (
                req("im.notify.personal.add", json!({"TAG": ""})),
                true,
                Once,
            ),
            (
                req("im.notify.personal.add", json!({"TAG": "x", "tag": ""})),
                true,
                Once,
            ),
            (
                req("IM.NOTIFY.SYSTEM.ADD", json!({"tag": "x"})),
                true,
                Repeatable,
            ),
            (req("im.notify.answer", json!({})), true, Once),
            (req("im.notify.read.all", json!({})), false, Repeatable),
            (req("im.notify.get", json!({})), false, Repeatable),
            (req("crm.lead.add", json!({})), true, Once),
            (
                batch(json!({"a": "im.notify.get", "b": "im.notify.system.add?USER_ID=1&TAG=t"})),
                true,
                Repeatable,
            ),
            (
                batch(json!(["im.notify.system.add?USER_ID=1&TAG=t&TAG=0"])),
                true,
                Once,
            ),
            (batch(json!(["im.notify.system.add?USER_ID=1"])), true, Once),
            (batch(json!(["batch?cmd[a]=im.notify.get"])), true, Once),
        ];
        for (request, oauth, want) in table {
            assert_eq!(
                safety_of(&request, oauth),
                want,
                "{request:?} oauth={oauth}"
            );
        }
    }
}
