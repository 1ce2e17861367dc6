//! The floor: bare rumqttc clients doing the MQTT work with no MCP in
//! between (publish latency, a bare subscriber process), and the burst
//! publisher every collect path is fed by.

use super::*;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn client_id(role: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bench-{role}-{}-{n}", std::process::id())
}

/// Connects a bare MQTT 5 client (like the server's: TCP_NODELAY, 30 s keep-alive).
pub(crate) async fn bare_connect(port: u16, role: &str) -> (r5::AsyncClient, r5::EventLoop) {
    let mut o = r5::MqttOptions::new(client_id(role), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_max_packet_size(Some(1 << 20));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (c, mut el) = r5::AsyncClient::new(o, 4096);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(r5::Event::Incoming(Packet::ConnAck(_)))) => return (c, el),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("bare client cannot connect to 127.0.0.1:{port}: {e}"),
            Err(_) => panic!("bare client: no CONNACK from 127.0.0.1:{port}"),
        }
        assert!(Instant::now() < deadline, "bare client: no CONNACK");
    }
}

pub(crate) async fn bare_disconnect(c: &r5::AsyncClient, el: &mut r5::EventLoop) {
    if c.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match el.poll().await {
                Ok(r5::Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The floor's publish latency: QoS 0 from `try_publish` until rumqttc wrote
/// and flushed the packet (its `Outgoing::Publish` event), QoS 1 until PUBACK.
pub(crate) fn floor_publish_latency(
    port: u16,
    topic: &str,
    qos: u8,
    sizes: Sizes,
) -> Vec<Duration> {
    runtime().block_on(async {
        let (c, mut el) = bare_connect(port, "lat").await;
        let q = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut out = Vec::with_capacity(sizes.calls);
        for i in 0..sizes.warmup + sizes.calls {
            let t0 = Instant::now();
            c.try_publish(topic, q, false, LAT_PAYLOAD.to_vec())
                .expect("bare publish");
            loop {
                match el.poll().await.expect("bare event loop") {
                    r5::Event::Outgoing(Outgoing::Publish(_)) if qos == 0 => break,
                    r5::Event::Incoming(Packet::PubAck(_)) if qos == 1 => break,
                    _ => {}
                }
            }
            if i >= sizes.warmup {
                out.push(t0.elapsed());
            }
        }
        bare_disconnect(&c, &mut el).await;
        out
    })
}

/// What a burst publisher did.
pub(crate) struct Burst {
    pub(crate) start: Instant,
    /// `start` on the wall clock, for comparison with another process.
    pub(crate) start_wall: SystemTime,
    pub(crate) end: Instant,
    pub(crate) sent: usize,
}

impl Burst {
    pub(crate) fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// Publishes `n` small QoS 0 messages to `topic` as fast as a bare rumqttc
/// client can, on a thread of its own. Timing starts after CONNACK; it ends
/// when the last PUBLISH was written.
pub(crate) fn spawn_burst(port: u16, topic: String, n: usize) -> JoinHandle<Burst> {
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let (c, mut el) = bare_connect(port, "pub").await;
            let start = Instant::now();
            let start_wall = SystemTime::now();
            let producer = {
                let c = c.clone();
                tokio::spawn(async move {
                    for i in 0..n {
                        let payload = format!("{{\"n\":{i}}}").into_bytes();
                        if c.publish(topic.as_str(), QoS::AtMostOnce, false, payload)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                })
            };
            let mut sent = 0usize;
            while sent < n {
                match el.poll().await {
                    Ok(r5::Event::Outgoing(Outgoing::Publish(_))) => sent += 1,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench: burst publisher: {e}");
                        break;
                    }
                }
            }
            let end = Instant::now();
            let _ = producer.await;
            bare_disconnect(&c, &mut el).await;
            Burst {
                start,
                start_wall,
                end,
                sent,
            }
        })
    })
}

/// What the bare subscriber took in.
pub(crate) struct FloorCollect {
    pub(crate) burst: Burst,
    pub(crate) received: usize,
    /// Arrival of the first and last message, ns since the epoch (the
    /// subscriber is another process, so wall clock, not `Instant`).
    pub(crate) first_ns: u128,
    pub(crate) last_ns: u128,
}

pub(crate) fn epoch_ns(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The bare subscriber, run as a process of its own (this bench binary with
/// `--floor-subscriber PORT TOPIC N`), like the server is one: prints `READY`
/// after SUBACK, then `received first_ns last_ns` when done.
pub(crate) fn floor_subscriber_main(port: u16, topic: &str, n: usize) {
    let (received, first, last) = runtime().block_on(async move {
        let (c, mut el) = bare_connect(port, "sub").await;
        c.try_subscribe(topic, QoS::AtMostOnce)
            .expect("bare subscribe");
        loop {
            if let r5::Event::Incoming(Packet::SubAck(_)) =
                el.poll().await.expect("bare subscriber")
            {
                break;
            }
        }
        println!("READY");
        let _ = std::io::stdout().flush();
        let (mut received, mut first, mut last) = (0usize, 0u128, 0u128);
        while received < n {
            match tokio::time::timeout(Duration::from_secs(3), el.poll()).await {
                Ok(Ok(r5::Event::Incoming(Packet::Publish(_)))) => {
                    let now = epoch_ns(SystemTime::now());
                    if received == 0 {
                        first = now;
                    }
                    last = now;
                    received += 1;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    eprintln!("bench: bare subscriber: {e}");
                    break;
                }
                Err(_) => break, // 3 s without a message: the rest is lost
            }
        }
        bare_disconnect(&c, &mut el).await;
        (received, first, last)
    });
    println!("{received} {first} {last}");
}

/// The floor of collect: a bare subscriber (another process) takes in a burst.
pub(crate) fn floor_collect(port: u16, topic: &str, n: usize) -> FloorCollect {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--floor-subscriber".to_string(),
            port.to_string(),
            topic.to_string(),
            n.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the floor subscriber");
    track(child.id());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("floor subscriber output");
    assert_eq!(line.trim(), "READY", "floor subscriber did not start");
    let burst = spawn_burst(port, topic.to_string(), n)
        .join()
        .expect("burst thread");
    line.clear();
    out.read_line(&mut line).expect("floor subscriber result");
    let _ = child.wait();
    untrack(child.id());
    let f: Vec<u128> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 3, "floor subscriber result: {line:?}");
    FloorCollect {
        burst,
        received: f[0] as usize,
        first_ns: f[1],
        last_ns: f[2],
    }
}
