//! The measured phases over MCP: cold start, `tools/call` latency, and the
//! two collect paths.

use super::*;

pub(crate) fn cold_start(label: &str, args: &[String], sizes: Sizes) -> Cold {
    let once = || {
        let line = Client::init_line(1);
        let t0 = Instant::now();
        let mut m = Mcp::spawn(args);
        m.write_line(&line);
        let (v, t1) = m.read_answer(1);
        assert!(v.get("result").is_some(), "initialize failed: {v}");
        let hwm = m.hwm_kib();
        drop(m);
        (t1 - t0, hwm)
    };
    once(); // warm-up: page cache, first-exec costs
    let mut times = Vec::new();
    let mut hwm = Vec::new();
    for _ in 0..sizes.spawns {
        let (d, h) = once();
        times.push(d);
        hwm.push(h as f64);
    }
    Cold {
        label: label.into(),
        dist: dist(&times),
        hwm_kib: dist_f64(hwm),
    }
}

pub(crate) fn latency_series(
    m: &mut Mcp,
    tool: &str,
    args: &Value,
    check: Option<&str>,
    sizes: Sizes,
) -> Dist {
    let mut out = Vec::with_capacity(sizes.calls);
    for i in 0..sizes.warmup + sizes.calls {
        let (v, d) = m.call(tool, args);
        if let Some(status) = check {
            assert_eq!(v["status"], status, "{tool}: unexpected result {v}");
        }
        if i >= sizes.warmup {
            out.push(d);
        }
    }
    dist(&out)
}

pub(crate) fn mcp_collect(m: &mut Mcp, port: u16, topic: &str, sizes: Sizes) -> CollectRow {
    let n = sizes.burst;
    let window = sizes.collect_window_ms;
    let id = m.fresh_id();
    let line = Client::call_line(
        id,
        "subscribe_and_collect",
        &json!({"filter": topic, "max_messages": 10_000, "duration_ms": window}),
    );
    let t0 = Instant::now();
    m.write_line(&line);
    // The call answers only at the end of its window; give it time to SUBACK.
    std::thread::sleep(Duration::from_millis(400));
    let burst = spawn_burst(port, topic.to_string(), n)
        .join()
        .expect("burst thread");
    let (v, _) = m.read_answer(id);
    let r = Client::structured("subscribe_and_collect", v);
    let stats = &r["stats"];
    let received = stats["received"].as_u64().unwrap_or(0) as usize;
    let dropped = stats["dropped"].as_u64().unwrap_or(0);
    let msgs = r["messages"].as_array().cloned().unwrap_or_default();
    let ts = |m: Option<&Value>| {
        m.and_then(|m| m["received_at"].as_str())
            .and_then(parse_rfc3339_ms)
    };
    let span_ms = match (ts(msgs.first()), ts(msgs.last())) {
        (Some(a), Some(b)) => Some((b - a) as f64),
        _ => None,
    };
    let mut note = format!(
        "returned {} (sampled: {}), stopped_by {}",
        stats["returned"], stats["sampled"], stats["stopped_by"]
    );
    let covered = burst.end + Duration::from_millis(500) < t0 + Duration::from_millis(window);
    if !covered {
        note.push_str("; WARNING: the burst did not end 0.5 s before the window closed");
    }
    CollectRow {
        path: COLLECT_PATH,
        rep: 0,
        published: burst.sent,
        publish_secs: burst.secs(),
        received,
        server_counted: Some(dropped),
        intake_rate: span_ms.and_then(|s| rate(received, s / 1e3)),
        end_to_end_rate: None,
        note,
    }
}

pub(crate) fn mcp_background(m: &mut Mcp, port: u16, topic: &str, sizes: Sizes) -> CollectRow {
    let n = sizes.burst;
    let (sub, _) = m.call(
        "subscribe",
        &json!({"filter": topic, "buffer_messages": 100_000, "buffer_bytes": 67_108_864}),
    );
    let sub_id = sub["subscription_id"]
        .as_str()
        .expect("subscription_id")
        .to_string();
    let publisher = spawn_burst(port, topic.to_string(), n);
    let (mut cursor, mut read, mut lost, mut reads) = (0u64, 0usize, 0u64, 0usize);
    let (mut first_ms, mut last_ms, mut last_read) = (None, None, None);
    let mut idle = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (r, _) = m.call(
            "read_messages",
            &json!({"subscription_id": sub_id, "since": cursor, "limit": 1000, "wait_ms": 250}),
        );
        reads += 1;
        let msgs = r["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        lost += r["lost"].as_u64().unwrap_or(0);
        cursor = r["next_cursor"].as_u64().unwrap_or(cursor);
        if msgs.is_empty() {
            idle += 1;
        } else {
            idle = 0;
            read += msgs.len();
            last_read = Some(Instant::now());
            let ts = |m: &Value| m["received_at"].as_str().and_then(parse_rfc3339_ms);
            if first_ms.is_none() {
                first_ms = ts(&msgs[0]);
            }
            last_ms = ts(&msgs[msgs.len() - 1]);
        }
        if read as u64 + lost >= n as u64
            || (publisher.is_finished() && idle >= 8)
            || Instant::now() > deadline
        {
            break;
        }
    }
    let burst = publisher.join().expect("burst thread");
    let (u, _) = m.call("unsubscribe", &json!({"subscription_id": sub_id}));
    let span = match (first_ms, last_ms) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1e3),
        _ => None,
    };
    CollectRow {
        path: BACKGROUND_PATH,
        rep: 0,
        published: burst.sent,
        publish_secs: burst.secs(),
        received: read,
        server_counted: Some(lost),
        intake_rate: span.and_then(|s| rate(read, s)),
        end_to_end_rate: last_read.and_then(|t| rate(read, (t - burst.start).as_secs_f64())),
        note: format!(
            "{reads} read_messages calls (limit 1000, wait_ms 250); server total_received {}",
            u["total_received"]
        ),
    }
}
