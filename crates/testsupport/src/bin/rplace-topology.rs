//! Runs the seed's architecture on this machine until Ctrl-C: redis-server and PostgreSQL
//! in temporary folders on free ports, three rplace instances sharing them, HAProxy in
//! front of the instances and Varnish in front of HAProxy. Open the Varnish URL it prints.
//!
//! `cargo build --release && cargo run --release -p rplace-testsupport --bin rplace-topology`
//! Options: `--instances N` (default 3); extra arguments after `--` go to every instance.

use rplace_testsupport::topology::{Haproxy, Instance, Varnish};
use rplace_testsupport::{Postgres, RedisServer};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut instances = 3usize;
    let mut extra = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--instances" => {
                instances = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--instances N")
            }
            "--" => extra.extend(args.by_ref()),
            other => panic!(
                "unknown argument {other}; usage: rplace-topology [--instances N] [-- rplace args]"
            ),
        }
    }
    let bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("rplace");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --release)",
        bin.display()
    );

    let redis = RedisServer::start();
    let pg = Postgres::start();
    let db_url = pg.create_database();
    let key: String = (0..64)
        .map(|i| format!("{:02x}", (i * 37 + 11) as u8 ^ std::process::id() as u8))
        .collect();
    let mut common = vec![
        "--redis-url".to_string(),
        redis.url(),
        "--database-url".into(),
        db_url.clone(),
        "--cookie-key".into(),
        key,
        "--trusted-proxies".into(),
        "127.0.0.1".into(),
        "--drain".into(),
        "1".into(),
    ];
    common.extend(extra);
    let nodes: Vec<Instance> = (0..instances)
        .map(|_| Instance::start(&bin, &common))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let haproxy = Haproxy::start(&ports);
    let varnish = Varnish::start(haproxy.port);
    println!("redis      {}", redis.url());
    println!("postgres   {db_url}");
    for n in &nodes {
        println!(
            "instance   http://127.0.0.1:{} (pid {:?}, log {})",
            n.port,
            n.pid(),
            n.log_path().display()
        );
    }
    println!("haproxy    http://127.0.0.1:{}", haproxy.port);
    println!(
        "varnish    http://127.0.0.1:{}   <- open this",
        varnish.port
    );
    println!("Ctrl-C stops everything.");
    // Ctrl-C ends this process; each server's watchdog then stops its server.
    loop {
        std::thread::park();
    }
}
