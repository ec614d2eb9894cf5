//! Smoke test: two messengers exchange pings on each transport.
#![allow(clippy::disallowed_methods)] // a test driver: it reads the clock
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msgr::entity::{EntityName, EntityType};
use msgr::messenger::{Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::{MPing, TypedMessage};
use msgr::proto::Policy;

#[derive(Default)]
struct Echo {
    got: Mutex<Vec<u64>>,
    reply: bool,
}

impl Dispatcher for Echo {
    fn ms_dispatch(&self, m: &Incoming) -> bool {
        self.got.lock().unwrap().push(m.msg.header.tid);
        if self.reply {
            let mut r = MPing::new().to_message(0);
            r.header.tid = m.msg.header.tid;
            m.conn.send_message(r).unwrap();
        }
        true
    }
}

fn run(kind: TransportKind) {
    let server = Messenger::builder(EntityName::new(EntityType::OSD, 0), 1)
        .transport(kind)
        .workers(2)
        .build();
    server.set_default_policy(Policy::stateless_server(0));
    let sd = Arc::new(Echo {
        reply: true,
        ..Default::default()
    });
    server.add_dispatcher_tail(sd.clone());
    let addr = server.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    server.start().unwrap();

    let client = Messenger::builder(EntityName::new(EntityType::CLIENT, 1), 2)
        .transport(kind)
        .workers(2)
        .build();
    client.set_default_policy(Policy::lossy_client(0));
    let cd = Arc::new(Echo::default());
    client.add_dispatcher_tail(cd.clone());
    client.start().unwrap();
    let c = client.connect_to(addr, EntityType::OSD);
    for i in 0..100 {
        c.send_message(MPing::new().to_message(0).with_tid(i))
            .unwrap();
    }
    let t = Instant::now();
    while cd.got.lock().unwrap().len() < 100 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*sd.got.lock().unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(*cd.got.lock().unwrap(), (0..100).collect::<Vec<_>>());
    client.shutdown();
    server.shutdown();
    client.wait();
    server.wait();
}

#[test]
fn posix_ping() {
    run(TransportKind::Posix);
}

#[test]
fn simple_ping() {
    run(TransportKind::Simple);
}
