//! Memory stays bounded: the binary with its embedded broker serves 1,000
//! calls (sessions opened and closed, pings, listings) and its peak RSS
//! (VmHWM) stays under 64 MB. The measured figure is printed for the record.

mod common;

use common::Server;
use serde_json::json;
use std::time::Duration;

#[test]
fn thousand_calls_stay_under_64_mb() {
    let mut s = Server::embedded(&[]);
    s.initialize();
    let port = s.v5_port;
    let v4 = s.v4_port;
    let mut calls = 0;
    for i in 0..200 {
        let args = if i % 2 == 0 {
            json!({"host": "127.0.0.1", "port": port})
        } else {
            json!({"connection_string": format!("mqtt://u:p@127.0.0.1:{v4}/mem-{i}"), "protocol_version": "3.1.1"})
        };
        let opened = s.call_ok("establish_connection", args);
        let list = s.call_ok("list_active_connections", json!({}));
        assert_eq!(
            list["sessions"].as_array().unwrap().len(),
            2,
            "default plus the new one"
        );
        assert_eq!(s.request("ping", json!({}))["result"], json!({}));
        s.call_ok(
            "close_connection",
            json!({"session_id": opened["session_id"]}),
        );
        assert_eq!(
            s.request("tools/list", json!({}))["result"]["tools"]
                .as_array()
                .map(|a| a.is_empty()),
            Some(false)
        );
        calls += 5;
    }
    assert_eq!(calls, 1000);
    let peak_kib = s.vm_hwm_kib();
    eprintln!(
        "peak RSS after {calls} calls: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert!(peak_kib > 0, "could not read VmHWM");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB exceeds 64 MiB"
    );
    let (status, _) = s.finish(Duration::from_secs(5));
    assert!(status.success());
}
