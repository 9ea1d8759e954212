//! A throwaway PostgreSQL server for tests (feature `conformance` with `postgres`): one per
//! test process, on a free loopback port and a temporary directory, stopped and removed
//! when the process ends. `initdb` and `pg_ctl` refuse to run as root, so they run as the
//! `postgres` user (via `runuser`) when the tests run as root.
//!
//! Test support: a server that cannot start is a failed test, so this panics with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The running server.
pub struct Cluster {
    port: u16,
    /// The directory of its Unix socket (the administrator's way in, TLS or not).
    socket_dir: PathBuf,
}

/// What a TLS server's certificates are: the CA file clients verify against.
pub struct TlsFiles {
    /// The CA that signed the server's certificate (PEM).
    pub ca_file: PathBuf,
    /// Another CA, which did not (PEM): a client trusting only it must refuse the server.
    pub other_ca_file: PathBuf,
}

fn bin(name: &str) -> PathBuf {
    // Debian keeps the binaries out of PATH; an installation in PATH is taken first.
    for dir in ["/usr/local/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions
            .flatten()
            .map(|v| v.path().join("bin").join(name))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Cluster {
    /// The process's server, started on first use.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start(false).0)
    }

    /// A server of its own that accepts TCP connections only over TLS (`hostssl`), with a
    /// certificate for 127.0.0.1 signed by a CA made for it.
    pub fn with_tls() -> (Cluster, TlsFiles) {
        let (cluster, files) = Cluster::start(true);
        (cluster, files.expect("TLS files"))
    }

    fn start(tls: bool) -> (Cluster, Option<TlsFiles>) {
        let dir =
            std::env::temp_dir().join(format!("scrip-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        // The postgres user must own it when the tests run as root.
        let _ = Command::new("chown").arg("postgres:").arg(&dir).status();
        let data = dir.join("data");
        let status = as_postgres_user(&bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs (PostgreSQL binaries installed?)");
        assert!(status.success(), "initdb failed in {}", dir.display());
        let files = tls.then(|| make_certificates(&dir, &data));
        let port = free_port();
        // Tests need no durability from a server that dies with them; benchmarks that
        // quote durable figures set SCRIP_PG_FSYNC=on.
        let fsync = if std::env::var("SCRIP_PG_FSYNC").is_ok_and(|v| v == "on") {
            "on"
        } else {
            "off"
        };
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=300",
            dir.display()
        );
        if tls {
            options.push_str(" -c ssl=on");
        }
        let status = as_postgres_user(&bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(
            status.success(),
            "pg_ctl start failed: see {}/log",
            dir.display()
        );
        // A watchdog stops the server and removes its directory once this process is gone
        // (statics are never dropped).
        let stop = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; {stop} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = as_postgres_prefix(&bin("pg_ctl")),
            data = data.display(),
            dir = dir.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        (
            Cluster {
                port,
                socket_dir: dir,
            },
            files,
        )
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for a fresh, empty schema of its own: every harness sees only
    /// its own tables.
    pub fn fresh_schema_url(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let schema = format!("s{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port
        );
        let create = format!("CREATE SCHEMA {schema}");
        // On its own thread with its own runtime: the caller may be inside another one.
        std::thread::scope(|s| {
            s.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    let (client, connection) =
                        tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                            .await
                            .expect("connects to the throwaway server");
                    let driver = tokio::spawn(connection);
                    client
                        .batch_execute(&create)
                        .await
                        .expect("creates the schema");
                    drop(client);
                    let _ = driver.await;
                })
            })
            .join()
            .expect("schema creation");
        });
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres options='-c search_path={schema}'",
            self.port
        )
    }
}

/// A CA, a server certificate for 127.0.0.1 it signs (into the data directory, where
/// PostgreSQL looks for `server.crt` and `server.key`), another CA, and a `pg_hba.conf`
/// that takes TCP connections only over TLS. Made with the `openssl` command.
fn make_certificates(dir: &Path, data: &Path) -> TlsFiles {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command runs");
        assert!(status.success(), "openssl {args:?} failed");
    };
    for ca in ["ca", "other-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-subj",
            &format!("/CN=scrip test {ca}"),
        ]);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("writes the extensions");
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "server.ext",
    ]);
    for file in ["server.crt", "server.key"] {
        std::fs::copy(dir.join(file), data.join(file)).expect("copies the certificate");
    }
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("writes pg_hba.conf");
    let _ = Command::new("chown")
        .arg("-R")
        .arg("postgres:")
        .arg(data)
        .status();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("restricts the key");
    TlsFiles {
        ca_file: dir.join("ca.pem"),
        other_ca_file: dir.join("other-ca.pem"),
    }
}

fn as_postgres_prefix(program: &Path) -> String {
    if is_root() {
        format!("runuser -u postgres -- '{}'", program.display())
    } else {
        format!("'{}'", program.display())
    }
}
