"""ledger._push_cache: a block is served once committed, as sealed last; a refused block
never is; the cache keeps only the newest committed blocks."""

from __future__ import annotations

from ledger._push_cache import PushCache


def test_a_block_sealed_ahead_is_served_once_committed() -> None:
    cache = PushCache()
    cache.sealed(7, b"block 7")
    cache.sealed(8, b"block 8")  # sealed while 7 commits
    assert cache.get(7) is None
    cache.committed(7)
    assert cache.get(7) == b"block 7"
    assert cache.get(8) is None
    cache.committed(8)
    assert cache.get(8) == b"block 8"


def test_a_refused_block_is_replaced_by_the_one_sealed_again_at_its_height() -> None:
    cache = PushCache()
    cache.sealed(7, b"refused 7")
    cache.sealed(8, b"refused 8, sealed on the refused 7")
    cache.sealed(7, b"block 7")
    cache.committed(7)
    assert cache.get(7) == b"block 7"
    cache.sealed(8, b"block 8")
    cache.committed(8)
    assert cache.get(8) == b"block 8"


def test_a_height_never_sealed_here_is_not_served() -> None:
    cache = PushCache()
    cache.committed(3)
    assert cache.get(3) is None


def test_only_the_newest_committed_and_sealed_blocks_are_kept() -> None:
    cache = PushCache(keep=2, ahead=2)
    for height in range(4):
        cache.sealed(height, b"%d" % height)
        cache.committed(height)
    assert [cache.get(h) for h in range(4)] == [None, None, b"2", b"3"]
    for height in range(4, 8):
        cache.sealed(height, b"%d" % height)  # none committed: the oldest two are dropped
    cache.committed(4)
    cache.committed(6)
    assert cache.get(4) is None and cache.get(6) == b"6"


def test_clear_forgets_everything() -> None:
    cache = PushCache()
    cache.sealed(1, b"1")
    cache.committed(1)
    cache.sealed(2, b"2")
    cache.clear()
    cache.committed(2)
    assert cache.get(1) is None and cache.get(2) is None
