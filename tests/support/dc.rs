//! A real Samba AD domain controller per test, run through `scripts/samba-dc`.
//!
//! The domain is provisioned once into a template per script version, shared by all test
//! processes through a file lock, and each [`TestDc`] runs on a copy of it on its own loopback
//! address. The LDAP ports of Samba are fixed, so concurrent DCs (also from other test
//! processes) differ by address, and an address lock file is held for the life of each DC.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const BASE_DN: &str = "DC=adgang,DC=test";
const BIND_DN: &str = "CN=Administrator,CN=Users,DC=adgang,DC=test";
const MANAGED_BASE: &str = "OU=Leverandører,DC=adgang,DC=test";

/// Test DCs use 127.0.0.FIRST_HOST to 127.0.0.LAST_HOST, the addresses that the server
/// certificate made by `scripts/samba-dc` names.
const FIRST_HOST: u8 = 10;
const LAST_HOST: u8 = 250;

/// Page size for the simple paged results control (RFC 2696) of `ldapsearch`. Samba returns at
/// most 1000 entries to a search without it.
const PAGE_SIZE: u32 = 500;

/// ldapsearch exit code for "No such object" (LDAP result code 32).
const NO_SUCH_OBJECT: i32 = 32;

/// One Samba AD domain controller with the test fixture, serving LDAPS on its own loopback
/// address. Dropping it stops the server and removes its folder.
pub struct TestDc {
    /// LDAPS URL, e.g. `ldaps://127.0.0.10:636`.
    pub url: String,
    /// Loopback address, e.g. `127.0.0.10`.
    pub address: String,
    /// PEM file of the test CA that issued the server certificate.
    pub ca_file: PathBuf,
    /// DN of the domain Administrator.
    pub bind_dn: String,
    pub bind_password: String,
    /// Domain naming context, `DC=adgang,DC=test`.
    pub base_dn: String,
    /// Empty OU for the accounts that Adgang manages, `OU=Leverandører,DC=adgang,DC=test`.
    pub managed_base: String,
    /// Folder with the DC's database, configuration, certificates and `samba.log`.
    pub dir: PathBuf,
    running: bool,
    lease: AddressLease,
}

/// One LDAP entry as `ldapsearch` returned it, with base64 (`attr::`) values decoded.
///
/// Values that are not valid UTF-8 (binary ones such as objectGUID and objectSid) stay as
/// the base64 text that `ldapsearch` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// Values by attribute name, spelled as the server returned it (e.g. `sAMAccountName`).
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    /// Returns the values of an attribute, matching its name case-insensitively as LDAP does;
    /// empty when the entry has none.
    pub fn get(&self, attr: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attr))
            .map(|(_, values)| values.as_slice())
            .unwrap_or(&[])
    }

    /// Returns the first value of an attribute, matching its name case-insensitively.
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.get(attr).first().map(String::as_str)
    }
}

impl TestDc {
    /// Starts a DC on a free loopback address from a copy of the template, provisioning the
    /// template first if no test process has done so for this version of the script.
    ///
    /// Panics with the script's output when the DC does not start.
    pub fn start() -> TestDc {
        let template = template_dir();
        let lease = AddressLease::claim(Some(&run_root()));
        let dir = lease
            .run_dir
            .clone()
            .expect("a lease for a test DC records its folder");
        let address = lease.address.clone();
        run_script(&[
            "start".as_ref(),
            dir.as_os_str(),
            address.as_ref(),
            template.as_os_str(),
        ]);

        let bind_password =
            fs::read_to_string(dir.join("admin-password")).unwrap_or_else(|error| {
                panic!("reading {}/admin-password failed: {error}", dir.display())
            });
        TestDc {
            url: format!("ldaps://{address}:636"),
            ca_file: dir.join("tls/ca.pem"),
            bind_dn: BIND_DN.to_string(),
            bind_password,
            base_dn: BASE_DN.to_string(),
            managed_base: MANAGED_BASE.to_string(),
            address,
            dir,
            running: true,
            lease,
        }
    }

    /// Stops the server, keeping its data and address for [`TestDc::restart`].
    pub fn stop(&mut self) {
        run_script(&["stop".as_ref(), self.dir.as_os_str()]);
        self.running = false;
    }

    /// Starts the server again on the same address and data, waiting until LDAPS accepts searches.
    pub fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        run_script(&[
            "start".as_ref(),
            self.dir.as_os_str(),
            self.address.as_ref(),
        ]);
        self.running = true;
    }

    /// Searches the subtree under `base` as Administrator with the `ldapsearch` CLI over LDAPS,
    /// paging through all results, as a check independent of the code under test.
    ///
    /// Returns no entries when `base` does not exist, and panics on any other failure.
    /// `attrs` empty requests all user attributes.
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> Vec<Entry> {
        let mut command = self.ldap_command("ldapsearch");
        command
            .args(["-LLL", "-o", "ldif-wrap=no"])
            .args(["-E", &format!("pr={PAGE_SIZE}/noprompt")])
            .args(["-D", &self.bind_dn, "-w", &self.bind_password])
            .args(["-b", base, "-s", "sub", filter])
            .args(attrs);
        let output = command_output(&mut command, None);
        match output.status.code() {
            Some(0) => parse_ldif(&String::from_utf8_lossy(&output.stdout)),
            Some(NO_SUCH_OBJECT) => Vec::new(),
            _ => panic!(
                "ldapsearch -b {base:?} {filter:?} on {} failed: {}",
                self.url,
                describe_output(&output)
            ),
        }
    }

    /// Applies LDIF change records as Administrator with the `ldapmodify` CLI over LDAPS.
    ///
    /// Panics with the output of `ldapmodify` when any record fails.
    pub fn ldapmodify(&self, ldif: &str) {
        if let Err(message) = self.try_ldapmodify(ldif) {
            panic!(
                "ldapmodify on {} failed: {message}\nLDIF:\n{ldif}",
                self.url
            );
        }
    }

    /// Applies LDIF change records like [`TestDc::ldapmodify`], but returns the output of a
    /// failing `ldapmodify` (e.g. "Constraint violation (19)") for tests that expect an error.
    pub fn try_ldapmodify(&self, ldif: &str) -> Result<(), String> {
        let mut command = self.ldap_command("ldapmodify");
        command.args(["-D", &self.bind_dn, "-w", &self.bind_password]);
        let output = command_output(&mut command, Some(ldif));
        if output.status.success() {
            Ok(())
        } else {
            Err(describe_output(&output))
        }
    }

    /// Binds as `dn` with `password` over LDAPS and reads the root DSE, returning the error
    /// output (e.g. "Invalid credentials (49)") when the bind fails. It uses `ldapsearch`
    /// because Samba 4.17 does not support the Who am I? operation of `ldapwhoami`.
    pub fn bind(&self, dn: &str, password: &str) -> Result<(), String> {
        let mut command = self.ldap_command("ldapsearch");
        command.args([
            "-LLL", "-D", dn, "-w", password, "-b", "", "-s", "base", "1.1",
        ]);
        let output = command_output(&mut command, None);
        if output.status.success() {
            Ok(())
        } else {
            Err(describe_output(&output))
        }
    }

    /// Returns the environment variables that `scripts/samba-dc env` prints, for running the
    /// operator binary against this DC.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ADGANG_LDAP_URL", self.url.clone()),
            ("ADGANG_CA_FILE", self.ca_file.display().to_string()),
            ("ADGANG_BIND_DN", self.bind_dn.clone()),
            ("ADGANG_BIND_PASSWORD", self.bind_password.clone()),
            ("ADGANG_MANAGED_BASE", self.managed_base.clone()),
        ]
    }

    /// Builds an OpenLDAP client command against this DC that verifies its certificate.
    fn ldap_command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-H", &self.url, "-o", "nettimeout=10"]);
        command
    }
}

impl Drop for TestDc {
    fn drop(&mut self) {
        // The end of the server log often shows why a test failed.
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.join("samba.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "last lines of samba.log of the DC on {}:\n{}",
                self.address,
                tail.join("\n")
            );
        }
        // Drop must not panic, because a panic while unwinding aborts the test process.
        if self.running
            && let Err(message) = try_run_script(&["stop".as_ref(), self.dir.as_os_str()])
        {
            eprintln!(
                "stopping the DC in {} failed: {message}",
                self.dir.display()
            );
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("removing {} failed: {error}", self.dir.display());
        }
        // The lease drops after this, releasing the address.
    }
}

/// An exclusive claim on one loopback address, held through a lock file in a folder shared by
/// all test processes on the machine. The lock file records the folder of the DC on that
/// address, so a later claim can stop a DC that a killed test process left running.
struct AddressLease {
    address: String,
    run_dir: Option<PathBuf>,
    lock: File,
}

impl AddressLease {
    /// Claims a free address. With `run_root`, the DC folder is `run_root/ADDRESS`, and the
    /// lock file records it.
    fn claim(run_root: Option<&Path>) -> AddressLease {
        let count = usize::from(LAST_HOST - FIRST_HOST) + 1;
        // Processes start at different addresses so that they rarely contend for one lock.
        let offset = std::process::id() as usize % count;
        for step in 0..count {
            let host = usize::from(FIRST_HOST) + (offset + step) % count;
            if let Some(lease) = AddressLease::try_claim(&format!("127.0.0.{host}"), run_root) {
                return lease;
            }
        }
        panic!(
            "no free loopback address in 127.0.0.{FIRST_HOST}-127.0.0.{LAST_HOST}: every one is \
             locked by another test process or has a listener on port 389 or 636"
        );
    }

    /// Claims `address` unless another process holds its lock or something that this harness
    /// did not start listens there. A DC left running on it by a killed test process is
    /// stopped and its folder removed first.
    fn try_claim(address: &str, run_root: Option<&Path>) -> Option<AddressLease> {
        let path = lock_root().join(format!("{address}.lock"));
        let mut lock = open_lock_file(&path);
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Error(error)) => panic!("locking {} failed: {error}", path.display()),
        }

        let mut previous = String::new();
        lock.read_to_string(&mut previous)
            .unwrap_or_else(|error| panic!("reading {} failed: {error}", path.display()));
        let previous = Path::new(previous.trim());
        if is_run_dir_for(previous, address) {
            remove_stale_dc(previous);
        }
        let run_dir = run_root.map(|root| root.join(address));
        if let Some(run_dir) = &run_dir {
            remove_stale_dc(run_dir);
        }
        if address_in_use(address) {
            return None;
        }

        let record = run_dir
            .as_ref()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        lock.rewind()
            .and_then(|()| lock.set_len(0))
            .and_then(|()| lock.write_all(record.as_bytes()))
            .unwrap_or_else(|error| panic!("writing {} failed: {error}", path.display()));
        Some(AddressLease {
            address: address.to_string(),
            run_dir,
            lock,
        })
    }

    /// Clears the record, so that no later claim takes the DC folder for a stale one.
    fn release(&mut self) {
        if let Err(error) = self.lock.set_len(0) {
            eprintln!("clearing the lock file of {} failed: {error}", self.address);
        }
    }
}

impl Drop for AddressLease {
    fn drop(&mut self) {
        // Closing the file releases the lock; the record is cleared first.
        self.release();
    }
}

/// Returns the template folder, provisioning it on first use by any test process.
fn template_dir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        stop_stale_dcs();
        provision_template()
    })
}

/// Stops the DCs that killed test processes left running on addresses that no process holds,
/// so that they do not pile up until their address is claimed again.
fn stop_stale_dcs() {
    let Ok(lock_files) = fs::read_dir(lock_root()) else {
        return;
    };
    for lock_file in lock_files.flatten() {
        let name = lock_file.file_name();
        let Some(address) = name.to_str().and_then(|name| name.strip_suffix(".lock")) else {
            continue;
        };
        // Claiming stops a stale DC; dropping the lease releases the address again.
        drop(AddressLease::try_claim(address, None));
    }
}

/// Folder of the address lock files, shared by all test processes on the machine, so that
/// concurrent runs from different checkouts also get different addresses.
fn lock_root() -> PathBuf {
    let root = std::env::temp_dir().join("adgang-test-dc");
    fs::create_dir_all(&root)
        .unwrap_or_else(|error| panic!("creating {} failed: {error}", root.display()));
    root
}

/// Provisions the template under an exclusive file lock, so that test binaries running at the
/// same time provision it once. The folder name contains a hash of the script, so a changed
/// script provisions a new template.
fn provision_template() -> PathBuf {
    let script_text = fs::read(script_path())
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", script_path().display()));
    let key = format!("{:016x}", fnv1a_64(&script_text));
    let root = state_root();
    fs::create_dir_all(&root)
        .unwrap_or_else(|error| panic!("creating {} failed: {error}", root.display()));
    let dir = root.join(format!("template-{key}"));
    let ready_marker = root.join(format!("template-{key}.ready"));

    let lock_path = root.join(format!("template-{key}.lock"));
    let lock = open_lock_file(&lock_path);
    // Blocks while another test process provisions the same template.
    lock.lock()
        .unwrap_or_else(|error| panic!("locking {} failed: {error}", lock_path.display()));
    if !ready_marker.exists() {
        // A folder without the marker is left from a provisioning that was interrupted.
        remove_stale_dc(&dir);
        let lease = AddressLease::claim(None);
        run_script(&["template".as_ref(), dir.as_os_str(), lease.address.as_ref()]);
        drop(lease);
        fs::write(&ready_marker, b"")
            .unwrap_or_else(|error| panic!("writing {} failed: {error}", ready_marker.display()));
    }
    drop(lock);
    dir
}

/// Stops a samba that runs in `dir` (the script kills only a samba whose working folder is
/// `dir`) and removes the folder.
fn remove_stale_dc(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if dir.join("samba.pid").exists()
        && let Err(message) = try_run_script(&["stop".as_ref(), dir.as_os_str()])
    {
        panic!(
            "stopping the stale DC in {} failed: {message}",
            dir.display()
        );
    }
    fs::remove_dir_all(dir).unwrap_or_else(|error| {
        panic!(
            "removing the stale DC folder {} failed: {error}",
            dir.display()
        )
    });
}

/// Returns whether `path` has the shape of a DC folder that this harness made for `address`
/// (`.../adgang-dc*/run/ADDRESS`), so that a garbled lock file never gets another folder removed.
fn is_run_dir_for(path: &Path, address: &str) -> bool {
    fn name(path: Option<&Path>) -> Option<&str> {
        path.and_then(Path::file_name)
            .and_then(|name| name.to_str())
    }
    path.is_absolute()
        && name(Some(path)) == Some(address)
        && name(path.parent()) == Some("run")
        && name(path.parent().and_then(Path::parent))
            .is_some_and(|root| root.starts_with("adgang-dc"))
}

/// Returns whether anything accepts connections on the LDAP ports of `address`.
fn address_in_use(address: &str) -> bool {
    [389, 636].iter().any(|port| {
        let socket: SocketAddr = format!("{address}:{port}")
            .parse()
            .expect("a valid socket address");
        TcpStream::connect_timeout(&socket, Duration::from_millis(500)).is_ok()
    })
}

fn open_lock_file(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|error| panic!("opening {} failed: {error}", path.display()))
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/samba-dc")
}

/// Folder for the template and the DC folders: inside Cargo's target folder, or in the system
/// temporary folder when that path is too long for Samba.
fn state_root() -> PathBuf {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let in_target = target_tmp.join("adgang-dc");
    // scripts/samba-dc rejects a DC folder longer than 83 bytes, because Samba's deepest Unix
    // socket, DIR/private/ldap_priv/ldapi, must fit in the 108 bytes of sun_path. The template
    // folder, `template-` and 16 hex digits, is the longest one made here.
    let longest_dir = in_target.join("template-0123456789abcdef");
    if longest_dir.as_os_str().len() <= 83 {
        in_target
    } else {
        let key = fnv1a_64(target_tmp.as_os_str().as_encoded_bytes());
        std::env::temp_dir().join(format!("adgang-dc-{key:016x}"))
    }
}

fn run_root() -> PathBuf {
    let root = state_root().join("run");
    fs::create_dir_all(&root)
        .unwrap_or_else(|error| panic!("creating {} failed: {error}", root.display()));
    root
}

fn run_script(args: &[&std::ffi::OsStr]) {
    if let Err(message) = try_run_script(args) {
        panic!("{message}");
    }
}

fn try_run_script(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut command = Command::new(script_path());
    command.args(args);
    let output = command_output(&mut command, None);
    if output.status.success() {
        Ok(())
    } else {
        let command_line: Vec<_> = args.iter().map(|arg| arg.to_string_lossy()).collect();
        Err(format!(
            "scripts/samba-dc {} failed: {}",
            command_line.join(" "),
            describe_output(&output)
        ))
    }
}

/// Runs a command to completion, writing `stdin` to it when given.
fn command_output(command: &mut Command, stdin: Option<&str>) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command.spawn().unwrap_or_else(|error| {
        panic!(
            "running {program} failed: {error}; install the tools with `scripts/samba-dc install`"
        )
    });
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|error| panic!("writing to the stdin of {program} failed: {error}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("waiting for {program} failed: {error}"))
}

fn describe_output(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

/// Parses the LDIF content records that `ldapsearch -LLL` prints (RFC 2849): entries separated
/// by blank lines, `#` comments, folded lines continued after one leading space, and base64
/// values after `::`.
pub fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(continuation), Some(last)) if !last.is_empty() => last.push_str(continuation),
            _ => lines.push(line.to_string()),
        }
    }

    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for line in lines.iter().filter(|line| !line.starts_with('#')) {
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        let Some((name, value)) = parse_ldif_line(line) else {
            panic!("invalid LDIF line from ldapsearch: {line:?}");
        };
        match current.as_mut() {
            None if name.eq_ignore_ascii_case("dn") => {
                current = Some(Entry {
                    dn: value,
                    attrs: BTreeMap::new(),
                });
            }
            None => panic!("LDIF record from ldapsearch does not start with dn: {line:?}"),
            Some(entry) => entry.attrs.entry(name.to_string()).or_default().push(value),
        }
    }
    entries.extend(current);
    entries
}

/// Splits `name: value` or `name:: base64` into the name and the decoded value.
fn parse_ldif_line(line: &str) -> Option<(&str, String)> {
    let (name, rest) = line.split_once(':')?;
    if let Some(encoded) = rest.strip_prefix(':') {
        let encoded = encoded.trim_start();
        let value = decode_base64(encoded)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_else(|| encoded.to_string());
        Some((name, value))
    } else {
        Some((name, rest.trim_start().to_string()))
    }
}

/// Decodes standard base64 (RFC 4648, with or without padding); `None` on an invalid character.
///
/// NOTE: Hand-written so the tests need no new dependency; it does not reject misplaced padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut buffered_bits = 0;
    for character in text.bytes() {
        let sextet = match character {
            b'A'..=b'Z' => character - b'A',
            b'a'..=b'z' => character - b'a' + 26,
            b'0'..=b'9' => character - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        buffered_bits += 6;
        if buffered_bits >= 8 {
            buffered_bits -= 8;
            bytes.push((buffer >> buffered_bits) as u8);
            buffer &= (1 << buffered_bits) - 1;
        }
    }
    Some(bytes)
}

/// 64-bit FNV-1a, a hash that stays the same across Rust versions, unlike `DefaultHasher`.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
