//! PgBouncer in transaction mode in front of the test server, as operators
//! run it (Debian's `pgbouncer` package; `scripts/test.sh` installs it).
//!
//! Each [`PgBouncer`] is its own process on a free port with its own
//! configuration in a temporary directory, stopped when dropped. It
//! forwards any database name to the test server (`* = host=... port=...`),
//! so a test's own database is reachable through it. `server_round_robin`
//! is on: PgBouncer then hands a client's next transaction to the next
//! server connection rather than the one it just used, so anything that
//! relies on landing on the same server connection twice fails at once
//! instead of now and then.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::config::{Config, Pooler};

/// A running PgBouncer (transaction pooling, trust auth), killed on drop.
pub struct PgBouncer {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

/// The PgBouncer binary: `PODFORGE_PGBOUNCER`, else Debian's
/// `/usr/sbin/pgbouncer`, else `pgbouncer` on the `PATH`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PODFORGE_PGBOUNCER") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("pgbouncer")
    }
}

impl PgBouncer {
    /// Starts PgBouncer in front of the test server ([`super::admin_url`])
    /// and waits until it accepts connections.
    ///
    /// Errors: PgBouncer is not installed (install Debian's `pgbouncer`, as
    /// `scripts/test.sh` does), or it exited or did not listen within 10 s
    /// (its log is in the error).
    pub async fn start() -> anyhow::Result<Self> {
        let admin = url::Url::parse(&super::admin_url()).context("PODFORGE_TEST_DATABASE_URL must be a URL")?;
        let host = admin.host_str().unwrap_or("127.0.0.1").to_owned();
        let server_port = admin.port().unwrap_or(5432);
        let user = if admin.username().is_empty() {
            "postgres"
        } else {
            admin.username()
        }
        .to_owned();
        let dir = std::env::temp_dir().join(format!("podforge-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        // PgBouncer refuses to run as root; it runs as `nobody` then, who
        // must be able to read its files.
        set_mode(&dir, 0o755)?;
        let port = free_port()?;
        let ini = dir.join("pgbouncer.ini");
        let users = dir.join("users.txt");
        std::fs::write(&users, format!("\"{user}\" \"\"\n"))?;
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={host} port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 admin_users = {user}\n\
                 pool_mode = transaction\n\
                 server_round_robin = 1\n\
                 max_client_conn = 1000\n\
                 default_pool_size = 20\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 log_connections = 0\n\
                 log_disconnections = 0\n",
                users = users.display(),
            ),
        )?;
        set_mode(&ini, 0o644)?;
        set_mode(&users, 0o644)?;
        let log_path = dir.join("pgbouncer.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary());
        if is_root() {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install Debian's pgbouncer: apt-get install pgbouncer; scripts/test.sh does)",
                    binary().display()
                )
            })?;
        let mut bouncer = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(bouncer);
            }
            let exited = bouncer.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("PgBouncer did not start ({exited:?}): {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `url` (a URL of the test server) with its host and port replaced by
    /// this PgBouncer's.
    pub fn through(&self, url: &str) -> String {
        let mut u = match url::Url::parse(url) {
            Ok(u) => u,
            Err(_) => return url.to_owned(),
        };
        let _ = u.set_host(Some("127.0.0.1"));
        let _ = u.set_port(Some(self.port));
        u.to_string()
    }

    /// Points `config` at this PgBouncer as README tells operators to:
    /// `DATABASE_URL` through the pooler, `PODFORGE_LISTEN_DATABASE_URL`
    /// (LISTEN and migrations) straight at the server, and
    /// `PODFORGE_DB_POOLER` = `pooler`.
    pub fn route(&self, config: &mut Config, pooler: Pooler) {
        let direct = config.database.url.clone();
        config.database.url = self.through(&direct);
        config.database.listen_url = Some(direct);
        config.database.pooler = pooler;
    }

    /// Transactions PgBouncer has carried for database `db` (`SHOW STATS`
    /// on its admin console): proof that traffic went through it.
    ///
    /// Errors: the admin console is unreachable.
    pub async fn transactions(&self, db: &str) -> anyhow::Result<i64> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("pgbouncer")
            .connect(tokio_postgres::NoTls)
            .await
            .context("PgBouncer's admin console")?;
        tokio::spawn(conn);
        let mut total = 0;
        for message in client.simple_query("SHOW STATS").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message
                && row.get("database") == Some(db)
            {
                total += row
                    .get("total_xact_count")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// PgBouncer's log so far (errors it reported, for failing tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn set_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn is_root() -> bool {
    // No libc call (the crate forbids unsafe code): the effective user id
    // from procfs, which every Linux has.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
