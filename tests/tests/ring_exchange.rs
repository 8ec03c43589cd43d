//! Two simulated domains connect a shared ring through xenstore, a grant
//! and an event channel, each on its own thread, and exchange 1,000,000
//! requests and responses. The frontend verifies every response (sequence
//! number and computed value), so loss, duplication or reordering fails
//! the test; the backend must unmap before the frontend's revoke succeeds.

use xen::sim::SimHost;

#[test]
fn one_million_messages_across_two_domains() {
    let host = SimHost::new().expect("simulated host");
    let r = firewall::lab::pingpong::run(&host, 1_000_000).expect("exchange");
    assert_eq!(r.messages, 1_000_000);
    // Batching: far fewer notifications and hypercalls than messages, but
    // never none (the peers really signalled each other).
    for (side, c) in [("frontend", &r.front), ("backend", &r.back)] {
        assert!(c.notifications > 0, "{side} never notified");
        assert!(
            c.notifications < r.messages / 10,
            "{side}: {} notifications",
            c.notifications
        );
        assert!(
            c.hypercalls() < r.messages / 5,
            "{side}: {} hypercalls",
            c.hypercalls()
        );
    }
    // Both consoles reached dom0's console backend.
    assert!(r
        .consoles
        .iter()
        .any(|(n, out)| n == "echo-front" && out.contains("1000000 responses verified")));
    assert!(r
        .consoles
        .iter()
        .any(|(n, out)| n == "echo-back" && out.contains("ring unmapped")));
    eprintln!(
        "ring exchange: {} messages in {:.3} s = {:.0} messages/s; per message: front {:.4} hypercalls {:.4} notifications, back {:.4} / {:.4}",
        r.messages,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.front.hypercalls() as f64 / r.messages as f64,
        r.front.notifications as f64 / r.messages as f64,
        r.back.hypercalls() as f64 / r.messages as f64,
        r.back.notifications as f64 / r.messages as f64,
    );
}
