//! Runs the seed's architecture on this machine until Ctrl-C: redis-server and PostgreSQL
//! in temporary folders on free ports, three rplace instances sharing them, HAProxy in
//! front of the instances and Varnish in front of HAProxy. Open the Varnish URL it prints.
//!
//! `cargo build --release && cargo run --release -p rplace-testsupport --bin rplace-topology`
//! Options: `--instances N` (default 3); `--redis-cluster` to share a three-master Redis
//! Cluster instead of one redis-server (the instances get `--redis-cluster` and the seed
//! list); extra arguments after `--` go to every instance.
//!
//! What it prints is one `name value...` line per process, for scripts: `redis` (the
//! `--redis-url`, a comma-separated seed list on a cluster), `redis-pid` per redis-server,
//! `postgres`, `instance` (URL, pid, log) per instance, `haproxy` (URL, pid), `varnish`,
//! then `ready`.

use rplace_testsupport::Postgres;
use rplace_testsupport::topology::{Haproxy, Instance, RedisKind, SharedRedis, Varnish};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut instances = 3usize;
    let mut kind = RedisKind::Single;
    let mut extra = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--instances" => {
                instances = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--instances N")
            }
            "--redis-cluster" => kind = RedisKind::Cluster,
            "--" => extra.extend(args.by_ref()),
            other => panic!(
                "unknown argument {other}; usage: rplace-topology [--instances N] \
                 [--redis-cluster] [-- rplace args]"
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

    let redis = SharedRedis::start(kind);
    let pg = Postgres::start();
    let db_url = pg.create_database();
    let key: String = (0..64)
        .map(|i| format!("{:02x}", (i * 37 + 11) as u8 ^ std::process::id() as u8))
        .collect();
    let mut common = redis.args();
    common.extend([
        "--database-url".into(),
        db_url.clone(),
        "--cookie-key".into(),
        key,
        "--trusted-proxies".into(),
        "127.0.0.1".into(),
        "--drain".into(),
        "1".into(),
    ]);
    common.extend(extra);
    let nodes: Vec<Instance> = (0..instances)
        .map(|_| Instance::start(&bin, &common))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let haproxy = Haproxy::start(&ports);
    let varnish = Varnish::start(haproxy.port);
    println!("redis      {}", redis.url());
    for r in redis.servers() {
        println!("redis-pid  {}", pid(r.pid()));
    }
    println!("postgres   {db_url}");
    for n in &nodes {
        println!(
            "instance   http://127.0.0.1:{} pid {} log {}",
            n.port,
            pid(n.pid()),
            n.log_path().display()
        );
    }
    println!(
        "haproxy    http://127.0.0.1:{} pid {}",
        haproxy.port,
        haproxy.pid()
    );
    println!(
        "varnish    http://127.0.0.1:{}   <- open this",
        varnish.port
    );
    println!("ready      Ctrl-C stops everything.");
    // Ctrl-C ends this process; each server's watchdog then stops its server.
    loop {
        std::thread::park();
    }
}

/// A pid for the listing (every process listed is running).
fn pid(p: Option<u32>) -> String {
    p.map_or_else(|| "-".into(), |p| p.to_string())
}
