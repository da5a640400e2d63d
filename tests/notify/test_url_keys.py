"""``follow_keys``: which pending queues must move when URL keys change (a reload or a
restart), and ``url_fingerprints``: how a URL is recognised without storing it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watcher.notify.url import NotifyUrl, follow_keys, url_fingerprints


def urls(*pairs: tuple[str, str]) -> list[NotifyUrl]:
    return [NotifyUrl(key=key, url=url) for key, url in pairs]


def prints(*pairs: tuple[str, str]) -> dict[str, str]:
    return url_fingerprints(urls(*pairs), "s4lt")


def test_naming_an_unnamed_url_moves_its_key() -> None:
    old = prints(("json-1", "json://hook/a"))
    moves, record = follow_keys(old, prints(("slowhook", "json://hook/a")))
    assert moves == {"json-1": "slowhook"}
    assert record == prints(("slowhook", "json://hook/a"))


def test_reordering_unnamed_urls_swaps_their_keys() -> None:
    old = prints(("json-1", "json://hook/a"), ("json-2", "json://hook/b"))
    new = prints(("json-1", "json://hook/b"), ("json-2", "json://hook/a"))
    assert follow_keys(old, new)[0] == {"json-1": "json-2", "json-2": "json-1"}


def test_a_removed_urls_queue_is_parked_where_no_url_can_take_it() -> None:
    old = prints(("json-1", "json://hook/a"), ("json-2", "json://hook/b"))
    new = prints(("json-1", "json://hook/a"), ("json-2", "json://hook/c"))  # b gone, c new
    moves, record = follow_keys(old, new)
    parked = moves["json-2"]
    assert moves == {"json-2": parked} and parked.startswith("gone-")
    assert record == {**new, parked: old["json-2"]}
    # Parked stays parked while the URL is away, and follows it back when it returns.
    assert follow_keys(record, new) == ({}, record)
    back = prints(("json-1", "json://hook/b"), ("json-2", "json://hook/a"))  # c gone now
    moves, _ = follow_keys(record, back)
    assert moves == {parked: "json-1", "json-1": "json-2", "json-2": moves["json-2"]}
    assert moves["json-2"].startswith("gone-") and moves["json-2"] != parked


def test_unchanged_and_ambiguous_urls_do_not_move() -> None:
    old = prints(
        ("same", "json://hook/a"),
        ("twice-1", "json://hook/d"),
        ("twice-2", "json://hook/d"),
    )
    new = prints(("same", "json://hook/a"), ("d", "json://hook/d"))
    assert follow_keys(old, new)[0] == {}
    assert follow_keys(prints(("x", "json://hook/d")), old)[0] == {}


def test_fingerprints_are_stable_per_salt_and_differ_across_salts() -> None:
    """A restart recognises a URL by its fingerprint under the stored salt; another store's
    salt gives another one (the URL itself is never stored: test_url_keys_restart)."""
    url = "json://hook.example/T0KEN-s3cret"
    (one,) = url_fingerprints(urls(("k", url)), "salt-1").values()
    (again,) = url_fingerprints(urls(("k", url)), "salt-1").values()
    (two,) = url_fingerprints(urls(("k", url)), "salt-2").values()
    assert one == again and one != two


@given(
    st.lists(st.sampled_from("abcdef"), unique=True),
    st.lists(st.sampled_from("abcdef"), unique=True),
)
def test_every_queue_of_a_configured_url_ends_under_that_urls_key(
    before: list[str], after: list[str]
) -> None:
    """Positional keys, any reorder, addition or removal: the queue of each URL that is
    still configured lands on its new key, and no other queue lands on a configured key."""
    old = prints(*[(f"json-{i}", f"json://{u}") for i, u in enumerate(before)])
    new = prints(*[(f"json-{i}", f"json://{u}") for i, u in enumerate(after)])
    moves, record = follow_keys(old, new)
    where = {old_key: moves.get(old_key, old_key) for old_key in old}
    for old_key, url_print in old.items():
        if url_print in new.values():
            assert new[where[old_key]] == url_print
        else:
            assert where[old_key] not in new  # parked: never sent to another URL
            assert record[where[old_key]] == url_print
