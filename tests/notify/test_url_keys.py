"""``key_moves``: which pending queues a reload must move when URL keys change."""

from __future__ import annotations

from watcher.notify.url import NotifyUrl, key_moves


def urls(*pairs: tuple[str, str]) -> list[NotifyUrl]:
    return [NotifyUrl(key=key, url=url) for key, url in pairs]


def test_naming_an_unnamed_url_moves_its_key() -> None:
    old = urls(("json-1", "json://hook/a"))
    assert key_moves(old, urls(("slowhook", "json://hook/a"))) == {"json-1": "slowhook"}


def test_reordering_unnamed_urls_swaps_their_keys() -> None:
    old = urls(("json-1", "json://hook/a"), ("json-2", "json://hook/b"))
    new = urls(("json-1", "json://hook/b"), ("json-2", "json://hook/a"))
    assert key_moves(old, new) == {"json-1": "json-2", "json-2": "json-1"}


def test_unchanged_edited_removed_or_ambiguous_urls_do_not_move() -> None:
    old = urls(
        ("same", "json://hook/a"),
        ("edited", "json://hook/b"),
        ("gone", "json://hook/c"),
        ("twice-1", "json://hook/d"),
        ("twice-2", "json://hook/d"),
    )
    new = urls(
        ("same", "json://hook/a"),
        ("renamed", "json://hook/B"),  # another URL string: another identity
        ("d", "json://hook/d"),
    )
    assert key_moves(old, new) == {}
    assert key_moves(urls(("x", "json://hook/d")), old[3:]) == {}
