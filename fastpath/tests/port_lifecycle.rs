//! Ports that fail, are removed, or are not yet published: the worker
//! reports what it sees, keeps forwarding among the other ports, and counts
//! every frame it cannot deliver.

mod common;

use common::{BROADCAST, TestSwitch, frame, mac};
use fastpath::drop::DropReason;
use fastpath::worker::WorkerEvent;

#[test]
fn a_gone_port_is_reported_and_the_others_keep_forwarding() {
    let mut sw = TestSwitch::with_ports(3);
    let (a, b) = (mac(0xa), mac(0xb));
    sw.teach(1, b);

    sw.wire(2).lock().unwrap().gone = true;
    sw.run();
    let events = sw.events();
    assert!(
        matches!(events.as_slice(), [WorkerEvent::PortGone { id: 2, .. }]),
        "{events:?}"
    );

    // The controller has not marked it down yet: the flood copy for port 2
    // is dropped as port_down (counted on the ingress port), the rest is
    // forwarded.
    sw.inject(0, frame(BROADCAST, a, 1));
    sw.inject(0, frame(b, a, 2));
    sw.inject(2, frame(BROADCAST, mac(0xc), 3));
    sw.run();
    assert_eq!(
        sw.take_sent(1),
        vec![frame(BROADCAST, a, 1), frame(b, a, 2)]
    );
    assert_eq!(sw.inbox_len(2), 1, "a gone port is no longer polled");
    assert!(sw.events().is_empty(), "gone is reported once");
    sw.assert_drops(&[(0, DropReason::PortDown, 1)]);

    // The controller reacts to the event: port 2 is down, floods skip it.
    sw.set_port_up(2, false);
    sw.inject(1, frame(BROADCAST, b, 4));
    sw.inject(1, frame(a, b, 5));
    sw.run();
    assert_eq!(
        sw.take_sent(0),
        vec![frame(BROADCAST, b, 4), frame(a, b, 5)]
    );
    sw.assert_drops(&[(0, DropReason::PortDown, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn frames_sent_to_a_port_that_just_failed_count_as_port_down() {
    let mut sw = TestSwitch::with_ports(3);
    sw.wire(2).lock().unwrap().gone = true;
    // Port 0 is polled before port 2, so the worker learns that port 2 is
    // gone from the transmission of this flood.
    sw.inject(0, frame(BROADCAST, mac(0xa), 1));
    sw.run();
    assert_eq!(sw.take_sent(1).len(), 1);
    assert!(matches!(
        sw.events().as_slice(),
        [WorkerEvent::PortGone { id: 2, .. }]
    ));
    sw.assert_drops(&[(0, DropReason::PortDown, 1)]);
    sw.assert_no_leaks();
}

#[test]
fn a_removed_port_gets_nothing_and_the_remaining_ports_keep_forwarding() {
    let mut sw = TestSwitch::with_ports(4);
    for id in 0..4 {
        sw.inject(id, frame(BROADCAST, mac(0xa + id as u8), 0));
    }
    sw.run();
    sw.learn();
    for id in sw.port_ids() {
        sw.take_sent(id);
    }

    // Removing the first port moves another into its place in the
    // worker's port list; lookups by id must still find the right one.
    let old0 = sw.del_port(0);
    assert_eq!(sw.table.get(common::key(mac(0xa))), None);
    sw.inject(1, frame(mac(0xd), mac(0xb), 1));
    sw.inject(3, frame(mac(0xc), mac(0xd), 2));
    sw.inject(2, frame(BROADCAST, mac(0xc), 3));
    sw.inject(1, frame(mac(0xa), mac(0xb), 4));
    sw.run();
    // Frames from different ingress ports may interleave in any order.
    let mut to3 = sw.take_sent(3);
    to3.sort();
    let mut want3 = vec![
        frame(mac(0xd), mac(0xb), 1),
        frame(BROADCAST, mac(0xc), 3),
        frame(mac(0xa), mac(0xb), 4),
    ];
    want3.sort();
    assert_eq!(to3, want3);
    let mut to2 = sw.take_sent(2);
    to2.sort();
    let mut want2 = vec![frame(mac(0xc), mac(0xd), 2), frame(mac(0xa), mac(0xb), 4)];
    want2.sort();
    assert_eq!(to2, want2);
    assert_eq!(
        sw.take_sent(1),
        vec![frame(BROADCAST, mac(0xc), 3)],
        "a frame to the removed port's MAC floods among the rest"
    );
    assert!(old0.lock().unwrap().outbox.is_empty());
    sw.assert_drops(&[]);
    sw.assert_no_leaks();

    // The id can be used again by a new port.
    sw.add_port(0);
    sw.inject(2, frame(BROADCAST, mac(0xc), 5));
    sw.run();
    assert_eq!(sw.take_sent(0), vec![frame(BROADCAST, mac(0xc), 5)]);
    assert!(old0.lock().unwrap().outbox.is_empty());
    sw.assert_no_leaks();
}

#[test]
fn a_gone_port_can_be_retired_and_attached_again() {
    let mut sw = TestSwitch::with_ports(3);
    sw.wire(1).lock().unwrap().gone = true;
    sw.run();
    assert!(matches!(
        sw.events().as_slice(),
        [WorkerEvent::PortGone { id: 1, .. }]
    ));
    // The controller retires the port; later its interface is back and a
    // new port with the same id is attached.
    sw.del_port(1);
    sw.add_port(1);
    sw.inject(0, frame(BROADCAST, mac(0xa), 1));
    sw.inject(1, frame(BROADCAST, mac(0xb), 2));
    sw.run();
    assert_eq!(sw.take_sent(1), vec![frame(BROADCAST, mac(0xa), 1)]);
    assert_eq!(sw.stats(1).rx_packets, 1, "the new port is polled");
    assert_eq!(sw.take_sent(0), vec![frame(BROADCAST, mac(0xb), 2)]);
    sw.assert_drops(&[]);
    sw.assert_no_leaks();
}

#[test]
fn frames_from_a_port_not_yet_published_are_not_counted_as_mac_limit() {
    let mut sw = TestSwitch::with_ports(2);
    // The controller sends AddPort before it publishes the new snapshot;
    // in between, the worker already polls the port.
    sw.add_port_unlisted(0, 2);
    sw.inject(2, frame(BROADCAST, mac(0xc), 1));
    sw.run();
    let s = sw.stats(2);
    assert_eq!(s.rx_packets, 1);
    assert_eq!(
        s.drop_count(DropReason::MacLimit),
        0,
        "a port that has learned nothing is not at its MAC limit"
    );
    sw.assert_no_leaks();
}
