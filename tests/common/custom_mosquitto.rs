//! Mosquitto with a configuration of the test's own (TLS listeners, password
//! files): the caller writes the listener lines, this starts it and waits
//! until every listed port accepts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Mosquitto; killed on drop.
pub struct CustomMosquitto(pub Child);

impl Drop for CustomMosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Starts Mosquitto with `config(ports)` for `n` free ports; None when
/// Mosquitto is absent outside CI (a notice is printed).
pub fn start(
    test: &str,
    dir: &Path,
    n: usize,
    config: impl Fn(&[u16]) -> String,
) -> Option<(CustomMosquitto, Vec<u16>)> {
    let bin = super::brokers::mosquitto_or_skip(test)?;
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| super::free_port()).collect();
        let mut uniq = ports.clone();
        uniq.sort();
        uniq.dedup();
        if uniq.len() != n {
            continue;
        }
        let path = dir.join("mosquitto.conf");
        // Started as root, Mosquitto drops to the `mosquitto` user before it
        // reads password and certificate files, which then cannot be read
        // under a private (0700) checkout such as `mktemp -d`. `user root`
        // keeps the starting user; it has no effect when that is not root.
        std::fs::write(&path, format!("{}\nuser root\n", config(&ports)))
            .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.join("mosquitto.log")).expect("create mosquitto.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto");
        let mut m = CustomMosquitto(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ports.iter().all(|p| accepts(*p)) {
                return Some((m, ports));
            }
            if m.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = m.0.kill();
    }
    panic!(
        "mosquitto with a custom configuration did not start; its log:\n{}",
        std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
    );
}
