//! libxenvchan and our vchan against each other on the simulated Xen:
//! every pairing, several ring geometries, both close orders (small
//! volumes; the 64 MiB runs and the throughput table are in
//! `throughput.rs`), and a field-by-field comparison of what each
//! implementation writes into the control page and xenstore.

use vchan_interop::probe::{probe, Trace};
use vchan_interop::{run, End, Impl, Session};
use xen::sim::SimHost;

/// Every session runs on a host of its own, so that none depends on dom0's
/// services after another session destroyed its domains.
fn fresh_host() -> SimHost {
    SimHost::new().expect("simulated host")
}

const C: Impl = Impl::Libxenvchan;
const OURS: Impl = Impl::Ours;

/// Ring minimums (server read_min, write_min) covering every placement:
/// both in-page (orders 10/11 and 11/10), one page ring per side
/// (QubesDB), mixed in-page and 1 MiB, and the largest rings.
const GEOMETRIES: [(usize, usize); 5] = [
    (1024, 2048),
    (2048, 1024),
    (4096, 4096),
    (2048, 1 << 20),
    (1 << 20, 1 << 20),
];

fn exchange(server: Impl, client: Impl, rings: (usize, usize), kib: u64, closer: End) {
    let s = Session {
        server,
        client,
        read_min: rings.0,
        write_min: rings.1,
        bytes: kib << 10,
        closer,
        seed: (rings.0 ^ rings.1.rotate_left(7)) as u64,
        port: 1000,
    };
    if let Err(e) = run(&fresh_host(), &s) {
        panic!("{s:?}: {e}");
    }
}

#[test]
fn libxenvchan_with_itself_on_the_shim() {
    for rings in GEOMETRIES {
        exchange(C, C, rings, 1024, End::Client);
    }
}

#[test]
fn libxenvchan_server_our_client_every_geometry_both_close_orders() {
    for rings in GEOMETRIES {
        exchange(C, OURS, rings, 1024, End::Client);
        exchange(C, OURS, rings, 256, End::Server);
    }
}

#[test]
fn our_server_libxenvchan_client_every_geometry_both_close_orders() {
    for rings in GEOMETRIES {
        exchange(OURS, C, rings, 1024, End::Server);
        exchange(OURS, C, rings, 256, End::Client);
    }
}

/// The four pairings' traces must be identical to libxenvchan's own.
fn compare(rings: (usize, usize), closer: End) {
    let trace = |s: Impl, c: Impl| -> Trace {
        probe(&fresh_host(), s, c, rings, closer)
            .unwrap_or_else(|e| panic!("probe {s:?}->{c:?} {rings:?} {closer:?}: {e}"))
    };
    let reference = trace(C, C);
    for (s, c) in [(OURS, OURS), (C, OURS), (OURS, C)] {
        let t = trace(s, c);
        assert_eq!(
            t, reference,
            "{s:?} server, {c:?} client, rings {rings:?}, {closer:?} closes first: \
             differs from libxenvchan with itself"
        );
    }
}

#[test]
fn control_page_and_keys_match_libxenvchan_when_the_client_closes() {
    for rings in GEOMETRIES {
        compare(rings, End::Client);
    }
}

#[test]
fn control_page_and_keys_match_libxenvchan_when_the_server_closes() {
    for rings in GEOMETRIES {
        compare(rings, End::Server);
    }
}

#[test]
fn libxenvchan_trace_is_what_the_protocol_says() {
    let t = probe(&fresh_host(), C, C, (4096, 4096), End::Client).unwrap();
    assert!(t.keys.decimal);
    assert_eq!(t.keys.perms, ["nS,rC", "nS,rC"]);
    // Server init: orders, cli_live 2 (waiting), srv_live 1, the server
    // asks the client for WRITE events; one grant per ring page.
    assert_eq!(t.server_init.orders, (12, 12));
    assert_eq!((t.server_init.live, t.server_init.notify), ((2, 1), (1, 0)));
    assert_eq!(t.server_init.grants, 2);
    // Client init: cli_live 1 and it asks the server for WRITE events.
    assert_eq!(
        (t.client_connected.live, t.client_connected.notify),
        ((1, 1), (1, 1))
    );
    // Closing clears the closer's byte (and the unmap notification clears
    // it again), nothing else.
    assert_eq!(t.first_closed.live, (0, 1));
    assert_eq!(t.both_closed.live, (0, 0));
    assert_eq!(t.both_closed.indices, [0; 4]);
}

/// Which control pages each client accepts, with every implied ring page
/// really granted: libxenvchan checks only the order range and that both
/// rings are not the same in-page ring; ours also that the grant list
/// does not run into an in-page ring.
#[test]
fn clients_accept_the_same_control_pages_as_libxenvchan() {
    let cases: [((u16, u16), bool, bool); 12] = [
        // (orders, libxenvchan accepts, ours accepts)
        ((10, 11), true, true),
        ((11, 10), true, true),
        ((12, 12), true, true),
        ((10, 12), true, true),
        ((11, 20), true, true),
        ((20, 20), true, true),
        ((10, 10), false, false),
        ((11, 11), false, false),
        ((9, 12), false, false),
        ((12, 21), false, false),
        ((0, 0), false, false),
        // 256 right-ring grants need bytes 24..1048: the list runs into the
        // left ring at 1024. libxenvchan maps whatever refs it finds there;
        // ours refuses the page.
        ((10, 20), true, false),
    ];
    for (orders, c, ours) in cases {
        let got = (
            vchan_interop::crafted::accepts(&fresh_host(), C, orders).unwrap(),
            vchan_interop::crafted::accepts(&fresh_host(), OURS, orders).unwrap(),
        );
        assert_eq!(
            got,
            (c, ours),
            "orders {orders:?}: (libxenvchan, ours) accepted"
        );
    }
}

#[test]
fn both_servers_refuse_rings_over_one_mib() {
    for (server, rings) in [
        (C, (2 << 20, 4096)),
        (OURS, (2 << 20, 4096)),
        (C, (4096, (1 << 20) + 1)),
        (OURS, (4096, (1 << 20) + 1)),
    ] {
        let s = Session {
            server,
            client: C,
            read_min: rings.0,
            write_min: rings.1,
            bytes: 1,
            closer: End::Client,
            seed: 1,
            port: 1001,
        };
        let e = run(&fresh_host(), &s).expect_err("an oversized ring was served");
        assert!(
            e.contains("server_init") || e.contains("vchan server"),
            "{server:?}: {e}"
        );
    }
}
