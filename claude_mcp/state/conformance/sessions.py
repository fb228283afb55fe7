"""`SessionIndex`: one row per conversation, paged most recent first; and `Histories`, which name
the index's conversations."""

from __future__ import annotations

from ..store import IndexedHistories, SessionIndex
from ._common import Contract, Names, run_all, session


async def a_session_is_put_read_replaced_and_deleted(store: SessionIndex) -> None:
    ns = Names()("ns")
    record = session(ns, "s1", cwd="/w", title="T", first_prompt="hi", forked_from="s0", settings={"model": "x"})
    await store.put_session(record)
    assert await store.get_session(ns, "s1") == record
    replaced = record.model_copy(update={"title": "T2", "updated_at": 200.0, "settings": {"model": "y", "n": [1]}})
    await store.put_session(replaced)
    assert await store.get_session(ns, "s1") == replaced
    assert await store.delete_session(ns, "s1") is True
    assert await store.delete_session(ns, "s1") is False
    assert await store.get_session(ns, "s1") is None


async def sessions_are_listed_most_recently_updated_first_a_page_at_a_time(store: SessionIndex) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    for i in range(7):
        await store.put_session(session(ns, f"s{i}", updated_at=float((i * 3) % 7)))
    await store.put_session(session(other, "s9", updated_at=99.0))
    pages = [await store.list_sessions(ns, limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    updated = [[r.updated_at for r in page] for page in pages]
    assert updated == [[6.0, 5.0, 4.0], [3.0, 2.0, 1.0], [0.0], []]
    assert await store.count_sessions(ns) == 7
    assert await store.count_sessions(n("nobody")) == 0


async def sessions_updated_at_once_are_paged_in_id_order_none_twice(store: SessionIndex) -> None:
    ns = Names()("ns")
    for i in (3, 0, 4, 1, 2):
        await store.put_session(session(ns, f"s{i}", updated_at=7.0))
    pages = [await store.list_sessions(ns, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [[r.session_id for r in page] for page in pages] == [["s0", "s1"], ["s2", "s3"], ["s4"]]


async def set_warm_records_which_replica_holds_a_session(store: SessionIndex) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_session(session(ns, "s1", updated_at=5.0))
    await store.set_warm(ns, "s1", "replica-a")
    warm = await store.get_session(ns, "s1")
    assert warm is not None and warm.warm_replica == "replica-a" and warm.updated_at == 5.0
    await store.set_warm(other, "s1", "replica-b")  # no such session there: nothing happens
    assert await store.get_session(other, "s1") is None
    await store.set_warm(ns, "s1", None)
    cold = await store.get_session(ns, "s1")
    assert cold is not None and cold.warm_replica is None


async def a_namespace_sees_and_deletes_only_its_own_sessions(store: SessionIndex) -> None:
    n = Names()
    a, b, c = n("a"), n("b"), n("c")
    await store.put_session(session(a, "s1"))
    await store.put_session(session(b, "s1", title="b's"))
    assert await store.delete_session(c, "s1") is False
    assert await store.get_session(c, "s1") is None
    assert await store.list_sessions(c, limit=10, offset=0) == []
    found = await store.get_session(b, "s1")
    assert found is not None and found.title == "b's"
    assert await store.delete_session(a, "s1") is True
    assert await store.get_session(b, "s1") == found


SESSION_INDEX: list[Contract[SessionIndex]] = [
    a_session_is_put_read_replaced_and_deleted,
    sessions_are_listed_most_recently_updated_first_a_page_at_a_time,
    sessions_updated_at_once_are_paged_in_id_order_none_twice,
    set_warm_records_which_replica_holds_a_session,
    a_namespace_sees_and_deletes_only_its_own_sessions,
]


async def run_session_index_conformance(store: SessionIndex) -> None:
    await run_all(store, SESSION_INDEX)


# Histories (with the session index).


async def a_history_digest_names_its_latest_session_in_its_namespace_only(store: IndexedHistories) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_history(ns, "digest-1", "s1", 1.0)
    assert await store.session_for_history(ns, "digest-1") == "s1"
    assert await store.session_for_history(other, "digest-1") is None
    assert await store.session_for_history(ns, "digest-0") is None
    await store.put_history(ns, "digest-1", "s2", 2.0)  # the same history, continued elsewhere later
    assert await store.session_for_history(ns, "digest-1") == "s2"


async def deleting_a_session_forgets_the_histories_that_name_it_in_its_namespace(store: IndexedHistories) -> None:
    n = Names()
    ns, other = n("ns"), n("other")
    await store.put_session(session(ns, "s1"))
    await store.put_session(session(other, "s1"))
    await store.put_history(ns, "digest-2", "s1", 3.0)
    await store.put_history(ns, "digest-3", "s2", 3.0)
    await store.put_history(other, "digest-2", "s1", 3.0)
    await store.delete_session(ns, "s1")
    assert await store.session_for_history(ns, "digest-2") is None
    assert await store.session_for_history(ns, "digest-3") == "s2"
    assert await store.session_for_history(other, "digest-2") == "s1"


HISTORIES: list[Contract[IndexedHistories]] = [
    a_history_digest_names_its_latest_session_in_its_namespace_only,
    deleting_a_session_forgets_the_histories_that_name_it_in_its_namespace,
]


async def run_histories_conformance(store: IndexedHistories) -> None:
    await run_all(store, HISTORIES)
