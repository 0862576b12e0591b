//! Test support: a throwaway OpenSSH `sshd` on a free loopback port serving `root` by key, for
//! the SFTP tests and the import benchmark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_binary() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// An ed25519 key pair without a passphrase, at `path` and `path.pub`.
pub fn keygen(path: &Path) -> Result<(), String> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .map_err(|e| format!("running ssh-keygen: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "ssh-keygen failed".to_string())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Whether OpenSSH's `ssh` and `sftp` clients are installed; without them a test skips,
/// unless `TRIBUTARY_TEST_REQUIRE_SSHD=1` makes that an error.
pub fn openssh_clients() -> Result<bool, String> {
    let found = ["sftp", "ssh"].iter().all(|b| {
        Command::new(b)
            .arg("-V")
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok()
    });
    if !found && std::env::var("TRIBUTARY_TEST_REQUIRE_SSHD").as_deref() == Ok("1") {
        return Err(
            "the OpenSSH clients are not installed and TRIBUTARY_TEST_REQUIRE_SSHD=1".into(),
        );
    }
    if !found {
        eprintln!("skipping: the OpenSSH clients (ssh, sftp) are not installed");
    }
    Ok(found)
}

impl Sshd {
    /// Starts sshd with its keys and config in `dir`. `Ok(None)` when sshd is not installed
    /// (unless `TRIBUTARY_TEST_REQUIRE_SSHD=1`, which makes that an error).
    pub fn start(dir: &Path) -> Result<Option<Sshd>, String> {
        let Some(binary) = sshd_binary() else {
            if std::env::var("TRIBUTARY_TEST_REQUIRE_SSHD").as_deref() == Ok("1") {
                return Err("sshd is not installed and TRIBUTARY_TEST_REQUIRE_SSHD=1".into());
            }
            eprintln!("skipping: OpenSSH sshd is not installed");
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // sshd refuses to start without its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .map_err(|e| e.to_string())?;
        let port = free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("sshd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting sshd: {e}"))?;
        let sshd = Sshd {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("sshd did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(sshd))
    }

    /// The private key that logs in as root (OpenSSH text).
    pub fn client_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("client_key")).unwrap_or_default()
    }
}
