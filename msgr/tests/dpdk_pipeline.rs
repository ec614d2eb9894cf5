//! The dpdk transport's worker loop under a pipelined peer: replies leave while the rest of
//! a batch is still being read, instead of after all of it.
//!
//! A worker reads a bounded number of frames per connection per pass (`INPUT_STEPS`) and
//! leaves the rest for its next turn, so the replies of this turn reach the wire (at the
//! end of the turn) while the peer's next requests wait. If a turn worked through every
//! buffered request before any reply left, a pipelined client and its server would take
//! turns with whole batches, each idle while the other works: on two cores, 16 ops in
//! flight ran at half the rate (measured: 0-byte OSD writes over the vhost pair, 270k ops/s
//! against 530k with the bound kept).
//!
//! Two messengers on the dpdk transport share an in-memory switch; the server echoes from
//! its fast-dispatch callback, which notes, for every request, how many frames the server's
//! port had sent so far. Requests dispatched between two of the server's transmissions ran
//! in one turn; the longest such run must stay within a few passes' budget.
// A test driver: it reads the clock to bound its waits (clippy.toml bans `Instant::now` for
// the sans-IO core only).
#![allow(clippy::disallowed_methods)]

mod mtest;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msgr::entity::EntityType;
use msgr::messenger::{Backend, TransportKind, UserspaceConfig};
use msgr::proto::Policy;
use mtest::*;
use stack::memlink::Switch;

const S: Duration = Duration::from_secs(1);
/// Requests sent back to back, far more than one turn may read.
const N: u64 = 600;
/// Frames one turn may dispatch on one connection: `INPUT_STEPS` (4) for each pass that
/// parses input in a turn (the stack's readable and writable events, the worker's pending
/// reads, its commands, a timer), with room to spare (seen: 16). A worker that drains its
/// input in one turn shows runs of the whole batch it holds (seen: 340 of these 600).
const RUN_MAX: usize = 32;

#[test]
fn replies_leave_while_a_batch_is_read() {
    let _g = begin("replies_leave_while_a_batch_is_read", 60 * S);
    let sw = Switch::new(1 << 16);
    let node = |num: u8, echo: bool| {
        let port = sw.port();
        let index = port.index();
        let ip = Ipv4Addr::new(10, 68, 0, num);
        let n = NodeBuilder::new(TransportKind::Dpdk, EntityType::OSD, i64::from(num))
            .policy(Policy::lossless_peer(0))
            .echo(echo)
            .fast(true)
            .userspace(UserspaceConfig::new(Backend::Switch(port), ip, 24))
            .start();
        (n, index)
    };
    let (client, _) = node(1, false);
    let (server, server_port) = node(2, true);
    let seen = Arc::new(Mutex::new(Vec::with_capacity(N as usize + 1)));
    {
        let (sw, seen) = (sw.clone(), Arc::clone(&seen));
        server.rec.set_hook(move |_| {
            let sent = sw.sent_by(server_port);
            seen.lock().unwrap().push(sent);
        });
    }
    let mut up = Stream::new(client.connect(&server));
    // The session first, so the batch below meets an open connection.
    assert!(up.send(0));
    wait_for("the session opens", 10 * S, || {
        client.rec.got(up.id | REPLY) == 1
    });
    for i in 0..N {
        assert!(up.send((i % 64) as usize), "the session is closed");
    }
    wait_for("every reply", 30 * S, || {
        client.rec.got(up.id | REPLY) == N as usize + 1
    });
    client.rec.stream(up.id | REPLY).exactly(N + 1).unwrap();
    client.rec.assert_clean();
    server.rec.assert_clean();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), N as usize + 1, "every request met the hook");
    let runs = runs(&seen);
    let longest = runs.iter().copied().max().unwrap_or(0);
    eprintln!(
        "replies_leave_while_a_batch_is_read: {} requests in {} runs between the server's \
         transmissions, longest {longest}",
        seen.len(),
        runs.len()
    );
    assert!(
        longest <= RUN_MAX,
        "a turn dispatched {longest} requests before any reply left (at most {RUN_MAX}): \
         runs {runs:?}"
    );
}

/// Lengths of the runs of equal values (requests dispatched between two transmissions).
fn runs(seen: &[u64]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut last = None;
    for &s in seen {
        match out.last_mut() {
            Some(n) if last == Some(s) => *n += 1,
            _ => out.push(1),
        }
        last = Some(s);
    }
    out
}

#[test]
fn runs_split_where_the_count_moves() {
    assert_eq!(runs(&[]), Vec::<usize>::new());
    assert_eq!(runs(&[3, 3, 3, 5, 6, 6]), vec![3, 1, 2]);
}
