//! A real `redis-server` for tests: on a loopback port chosen at run time, no persistence,
//! stopped when dropped. Found as `OINT_REDIS_SERVER` or `redis-server` on PATH (Debian's
//! package, which `.ci/run` installs); tests skip with a message when there is none.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    program: PathBuf,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    /// Serves TLS only (`--tls-port`), so readiness is a listening port, not a plain PING.
    tls: bool,
}

/// The files of a TLS `redis-server`: a CA of its own and a certificate for 127.0.0.1.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// A fresh CA and a server certificate it signed, written under `dir` with `prefix`.
    pub fn generate(dir: &Path, prefix: &str) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} test CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let files = TlsFiles {
            ca: dir.join(format!("{prefix}-ca.pem")),
            cert: dir.join(format!("{prefix}-cert.pem")),
            key: dir.join(format!("{prefix}-key.pem")),
        };
        std::fs::write(&files.ca, ca_cert.pem()).unwrap();
        std::fs::write(&files.cert, leaf_cert.pem()).unwrap();
        std::fs::write(&files.key, leaf_key.serialize_pem()).unwrap();
        files
    }
}

/// The `redis-server` to run, or `None` (with a line on stderr saying why the test skips).
pub fn program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OINT_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        eprintln!(
            "skipped: no redis-server (install Debian's redis-server or set OINT_REDIS_SERVER)"
        );
    }
    found
}

impl RedisServer {
    /// Starts a server keeping its files in `dir`; `extra` are further `redis-server`
    /// arguments (`--requirepass`, TLS options, …). `None` when there is no `redis-server`.
    pub fn start(dir: &Path, extra: &[&str]) -> Option<RedisServer> {
        let program = program()?;
        let server = RedisServer {
            child: None,
            program,
            port: 0,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: false,
        };
        server.launch()
    }

    /// Starts a server that speaks TLS only, with the certificate of `files`; clients are
    /// not asked for certificates. `None` when there is no `redis-server`.
    pub fn start_tls(dir: &Path, files: &TlsFiles) -> Option<RedisServer> {
        let program = program()?;
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let server = RedisServer {
            child: None,
            program,
            port: 0,
            dir: dir.to_path_buf(),
            extra: vec![
                "--tls-cert-file".into(),
                path(&files.cert),
                "--tls-key-file".into(),
                path(&files.key),
                "--tls-ca-cert-file".into(),
                path(&files.ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            tls: true,
        };
        server.launch()
    }

    fn launch(mut self) -> Option<RedisServer> {
        // A port the OS just handed out is free unless another process takes it in between;
        // a few tries cover that race.
        for _ in 0..5 {
            self.port = free_port();
            if self.spawn() {
                return Some(self);
            }
        }
        panic!("redis-server did not start on a free loopback port (5 tries)");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/DB` (`rediss://` for a TLS server).
    pub fn url(&self, db: u32) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (as a crash would: SIGKILL, nothing saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One spawn on `self.port`; true once it answers PING (listens, for TLS).
    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut args = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        args.extend([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]);
        args.extend(self.extra.iter().map(String::as_str));
        let mut child = Command::new(&self.program)
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let ready = if self.tls {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                answers_ping(self.port)
            };
            if ready {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Whether something on `port` answers an inline PING like Redis (`+PONG`, or `-NOAUTH` when
/// a password is required).
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    match stream.read(&mut reply) {
        Ok(n) => reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}
