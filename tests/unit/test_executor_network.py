"""The pure parts of container networking: address clashes and socket counts."""

from __future__ import annotations

from dirk.workers.executor.network import address_for, same_address, socket_counts


def test_interface_indexes_65533_apart_share_an_address() -> None:
    # A namespace kept for reuse lives long while the host's interface indexes keep growing.
    ifindex = 7 + 2 * 65533
    assert list(same_address(ifindex)) == [7 + 65533, 7]
    assert {address_for(i) for i in same_address(ifindex)} == {address_for(ifindex)}
    assert list(same_address(65533)) == []
    assert list(same_address(65534)) == [1]


def test_socket_counts_read_sockstat() -> None:
    text = (
        "sockets: used 3\n"
        "TCP: inuse 0 orphan 2 tw 1 alloc 6 mem 0\n"
        "UDP: inuse 0 mem 0\n"
        "FRAG: inuse 0 memory 0\n"
    )
    counts = socket_counts(text + "TCP6: inuse 4\n")
    assert counts["TCP tw"] == 1 and counts["TCP inuse"] == 0 and counts["TCP6 inuse"] == 4
    assert counts["sockets used"] == 3 and counts["FRAG memory"] == 0
