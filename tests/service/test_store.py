"""The style stores, SQLite and a real redis-server, held to the same promises: durable,
atomic under a quota, paged in registration order, per owner, expired when asked, upgraded from
the previous version's data without loss, and a damaged value skipped, never executed."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
import torch

from redisproc import run_redis
from model.adain import StyleCode
from service.stores import StoreFull, StyleEntry
from service.stores import codec
from service.stores.base import QuotaFull
from service.stores.sqlite import SQLiteStyles
from service.tenants import LOCAL


def code(seed: int, colors: bool = True) -> StyleCode:
    g = torch.Generator().manual_seed(seed)
    mean, std = torch.randn(512, generator=g), torch.rand(512, generator=g) + 0.1
    if not colors:
        return StyleCode(mean, std)
    return StyleCode(mean, std, torch.rand(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 0.01)


def entry(i: int, name: str | None = None, created: float | None = None) -> StyleEntry:
    return StyleEntry(f"id{i:03d}", code(i), 512, "uploaded", name, created=1_000.0 + i if created is None else created)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """make_store(capacity) -> a fresh store of the parametrised backend."""
    if request.param == "sqlite":
        yield lambda capacity=100: SQLiteStyles(tmp_path / "styles.sqlite3", capacity)
        return
    from service.stores.redis import RedisStyles

    with run_redis(tmp_path / "redis") as server:
        yield lambda capacity=100: RedisStyles(server.url, capacity)


def test_the_format_round_trips_and_refuses_anything_else():
    for c in (code(1), code(2, colors=False)):
        back, fields, _ = codec.decode(codec.encode(c, {"id": "x", "name": "ü"}))
        assert torch.equal(back.mean, c.mean) and torch.equal(back.std, c.std) and fields["name"] == "ü"
        assert back.has_colors == c.has_colors
    assert codec.decode(codec.encode(code(1), {}, b"\xff\xd8 a jpeg"))[2] == b"\xff\xd8 a jpeg"
    good = codec.encode(code(1), {})
    evil = pickle.dumps({"mean": torch.zeros(512)})
    for bad in (b"", b"\0" * 8, evil, good[:-100], good.replace(b"adain-style/1", b"adain-style/9"),
                codec.encode(StyleCode(torch.zeros(3), torch.ones(3)), {}),
                codec.encode(StyleCode(torch.zeros(512), torch.full((512,), float("nan"))), {}),
                codec.encode(code(1), {}, bytes(codec.MAX_THUMBNAIL + 1))):
        with pytest.raises(codec.CorruptValue):
            codec.decode(bad)


def test_add_get_delete_and_the_same_id_again(make_store):
    store = make_store()
    assert store.get("id001") is None and store.count() == 0
    first = store.add(entry(1, "first"), 100)
    got = store.get("id001")
    assert got is not None and got.name == "first" and got.style_size == 512 and got.created == first.created
    assert torch.equal(got.code.mean, first.code.mean) and torch.equal(got.code.rgb_cov, first.code.rgb_cov)
    again = store.add(entry(1, "renamed", created=9_999.0), 100)  # same bytes registered again
    assert again.name == "renamed" and again.created == first.created and store.count() == 1
    assert store.add(entry(1), 100).name == "renamed"  # no name: the old one stays
    assert store.delete("id001") and not store.delete("id001") and store.get("id001") is None
    assert store.count() == 0


def test_a_full_store_refuses_and_keeps_everything(make_store):
    store = make_store(capacity=3)
    for i in range(3):
        store.add(entry(i), 100)
    with pytest.raises(StoreFull) as e:
        store.add(entry(3), 100)
    assert e.value.status == 507 and "ADAIN_MAX_REGISTERED_STYLES" in e.value.detail
    assert store.count() == 3 and all(store.get(f"id{i:03d}") for i in range(3))
    store.add(entry(1, "again"), 100)  # re-registering one it holds is not a new style
    store.delete("id000")
    store.add(entry(3), 100)
    assert store.count() == 3


def test_concurrent_registrations_never_pass_the_quota(make_store):
    store = make_store(capacity=10)
    errors: list[Exception] = []

    def add(i: int) -> None:
        try:
            store.add(entry(i), 100)
        except StoreFull as e:
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 10 and len(errors) == 20


def test_pages_in_registration_order(make_store):
    store = make_store()
    for i in (5, 1, 3, 2, 4):  # created 1000 + i: registration order is 1..5
        store.add(entry(i), 100)
    rows = store.page(None, None, 2)
    assert [e.id for _, e in rows] == ["id001", "id002"]
    rows = store.page(None, rows[-1][0], 10)
    assert [e.id for _, e in rows] == ["id003", "id004", "id005"]
    assert store.page(None, rows[-1][0], 10) == []


def test_a_damaged_value_is_reported_and_skipped(make_store, tmp_path, caplog):
    store = make_store()
    store.add(entry(1), 100)
    store.add(entry(2), 100)
    evil = pickle.dumps(object())
    if store.backend == "sqlite":
        db = sqlite3.connect(tmp_path / "styles.sqlite3")
        db.execute("UPDATE styles SET value = ? WHERE id = 'id001'", (evil,))
        db.commit()
    else:
        store.client.set(store.key("id001"), evil)
    assert store.get("id001") is None and store.get("id002") is not None
    assert [e.id if e else None for _, e in store.page(None, None, 10)] == [None, "id002"]
    assert "not a style code" in caplog.text


def test_styles_are_their_owners_and_each_owner_has_a_quota(make_store):
    store = make_store(capacity=10)
    for i in range(3):
        store.add(replace(entry(i), owner="a"), 3)
    store.add(replace(entry(5), owner="b"), 3)
    with pytest.raises(QuotaFull) as e:
        store.add(replace(entry(4), owner="a"), 3)
    assert e.value.status == 507 and "'a'" in e.value.detail
    store.add(replace(entry(1), owner="a", name="again"), 3)  # one it holds is not a new style
    assert store.count("a") == 3 and store.count("b") == 1 and store.count() == 4
    assert [e.id for _, e in store.page("b", None, 10)] == ["id005"]
    assert [e.id for _, e in store.page("a", None, 10)] == ["id000", "id001", "id002"]
    assert len(store.page(None, None, 10)) == 4 and store.get("id005").owner == "b"
    assert store.delete("id000") and store.count("a") == 2
    store.add(replace(entry(4), owner="a"), 3)


def test_a_style_with_a_ttl_is_gone_after_it_everywhere(make_store):
    store = make_store(capacity=3)
    soon, later = time.time() + 2.0, time.time() + 3600  # soon: after the adds however busy the machine
    store.add(replace(entry(1), owner="a", expires=soon), 10)
    store.add(replace(entry(2), owner="a", expires=soon), 10)
    store.add(replace(entry(2), owner="a", expires=later), 10)  # registered again: the longer life
    store.add(replace(entry(3), owner="a"), 10)
    assert store.get("id001").expires == soon and store.get("id002").expires == later
    store.add(replace(entry(3), owner="a", expires=soon), 10)  # never shortened: still no expiry
    assert store.get("id003").expires is None
    time.sleep(soon - time.time() + 0.2)
    assert store.get("id001") is None and store.get("id002") is not None
    assert [e.id for _, e in store.page("a", None, 10)] == ["id002", "id003"]
    assert store.count() == 2 and store.count("a") == 2
    store.add(replace(entry(4), owner="a"), 10)  # the expired one's place is free again (capacity 3)


def test_stores_written_before_tenants_keep_their_styles(make_store, tmp_path):
    """Values and indexes exactly as the previous version wrote them: after the upgrade every
    style is still there, owned by the local tenant, and the store works on."""
    old = [entry(i, f"old {i}") for i in range(3)]
    fields = [{"id": e.id, "name": e.name, "style_size": e.style_size, "created": e.created} for e in old]
    blobs = [codec.encode(e.code, f) for e, f in zip(old, fields)]
    probe = make_store()
    if probe.backend == "sqlite":
        probe.close()
        (tmp_path / "styles.sqlite3").unlink(missing_ok=True)  # opened lazily: nothing written yet
        db = sqlite3.connect(tmp_path / "styles.sqlite3")
        db.execute("CREATE TABLE styles (id TEXT PRIMARY KEY, sort_key TEXT NOT NULL UNIQUE, value BLOB NOT NULL)")
        db.executemany("INSERT INTO styles VALUES (?, ?, ?)", [(e.id, e.sort_key, b) for e, b in zip(old, blobs)])
        db.commit()
        db.close()
    else:
        probe.client.flushall()
        for e, b in zip(old, blobs):
            probe.client.set(f"adain:style:{e.id}", b)
            probe.client.zadd("adain:styles", {e.sort_key: 0})
    store = make_store()
    assert [(e.id, e.name, e.owner) for _, e in store.page(LOCAL, None, 10)] == \
        [(e.id, e.name, LOCAL) for e in old]
    assert store.count() == 3 and store.count(LOCAL) == 3 and store.get("id001").owner == LOCAL
    assert torch.equal(store.get("id002").code.mean, old[2].code.mean)
    store.add(replace(entry(9), owner="b"), 10)
    assert store.delete("id000") and store.count(LOCAL) == 2 and store.count() == 3


def test_sqlite_keeps_what_was_committed_across_reopening(tmp_path):
    SQLiteStyles(tmp_path / "s.sqlite3", 10).add(entry(7, "kept"), 10)
    assert SQLiteStyles(tmp_path / "s.sqlite3", 10).get("id007").name == "kept"


@pytest.fixture(params=["sqlite", "redis"])
def make_jobs(request, tmp_path):
    """make_jobs(ttl, folder) -> a video-job store of the parametrised backend (a replica; the
    folder of the jobs' files is shared by every replica, as ADAIN_VIDEO_FILES_DIR is)."""
    if request.param == "sqlite":
        from service.stores.sqlite import SQLiteJobs

        yield lambda ttl=60, folder="work": SQLiteJobs(tmp_path / "videos.sqlite3", tmp_path / folder, ttl)
        return
    from service.stores.redis import RedisJobs

    with run_redis(tmp_path / "redis") as server:
        yield lambda ttl=60, folder="work": RedisJobs(server.url, tmp_path / folder, ttl)


def test_job_records_and_results(make_jobs):
    from service.stores import VideoJob

    store = make_jobs()
    job = VideoJob("j1", replica="host:1", frames_total=10)
    store.put(job)
    assert store.get("j1") == job
    job.frames_done = 4
    assert store.update(job) and store.get("j1").frames_done == 4
    blob = bytes(range(256)) * 9000  # 2.3 MB: several pieces in Redis
    path = store.work_path("j1", ".mp4.part")
    path.write_bytes(blob)
    assert store.keep_result("j1", path) == len(blob) and store.result_size("j1") == len(blob)
    assert b"".join(store.read_result("j1", 0, len(blob) - 1)) == blob
    assert b"".join(store.read_result("j1", 1_000_000, 1_100_000)) == blob[1_000_000:1_100_001]
    assert store.delete("j1") and store.get("j1") is None and store.result_size("j1") is None
    assert not store.update(job)  # a deleted job is not written back by its worker
    assert store.get("never") is None and not store.delete("never")


def test_job_records_expire_with_their_results(make_jobs):
    import time

    from service.stores import VideoJob

    store = make_jobs(ttl=1)
    store.put(VideoJob("old", replica="host:1", state="done"))
    path = store.work_path("old", ".mp4.part")
    path.write_bytes(b"mp4")
    store.keep_result("old", path)
    time.sleep(1.3)
    assert store.get("old") is None and not store.update(VideoJob("old", replica="host:1", state="done"))
    long_ago = time.time() - 3600
    os.utime(store.work_path("old", ".mp4"), (long_ago, long_ago))  # untouched since: not being written
    store.sweep()
    assert store.result_size("old") is None


def test_a_damaged_job_record_is_skipped(make_jobs, caplog):
    store = make_jobs()
    if store.backend == "sqlite":
        store._execute("INSERT INTO jobs VALUES ('bad', ?, 1e12)", (pickle.dumps({"id": "bad"}).hex(),))
    else:
        store.client.set(store.key("bad"), pickle.dumps({"id": "bad"}))
    assert store.get("bad") is None and "not a job record" in caplog.text


def test_job_records_from_before_tenants_belong_to_the_local_tenant(make_jobs):
    old = json.dumps({"id": "j0", "owner": "host:1", "state": "done", "created": 1.0, "updated": 2.0,
                      "frames_done": 8, "frames_total": 8, "rate": 4.0, "width": 64, "height": 48, "fps": 8.0,
                      "seconds": 1.0, "audio": False, "error": None, "result_bytes": 1234})
    store = make_jobs()
    if store.backend == "sqlite":
        store._execute("INSERT INTO jobs VALUES ('j0', ?, 1e12)", (old,))
    else:
        store.client.set(store.key("j0"), old)
    job = store.get("j0")
    assert (job.tenant, job.replica, job.state, job.result_bytes) == (LOCAL, "host:1", "done", 1234)


def test_units_swap_only_from_the_value_they_hold_and_keep_the_job_alive(make_jobs):
    import time

    from service.stores import VideoJob

    store = make_jobs(ttl=2)
    store.put(VideoJob("j", created=1.0))
    store.put_units("j", {"s0": "a", "s1": "b"})
    assert store.units("j") == {"s0": "a", "s1": "b"}
    assert store.swap_unit("j", "s0", "a", "a2") and not store.swap_unit("j", "s0", "a", "a3")
    assert store.units("j")["s0"] == "a2"
    for _ in range(3):  # each swap pushes the expiry on: 3 s later the job is still there
        time.sleep(1)
        assert store.swap_unit("j", "s1", store.units("j")["s1"], f"b{_}")
    assert store.get("j") is not None
    assert store.active() == ["j"]
    store.delete("j")
    assert store.units("j") == {} and not store.swap_unit("j", "s1", "b2", "x") and store.active() == []


def test_files_are_shared_by_replicas_and_never_store_values(make_jobs, tmp_path):
    """A job's bytes are files in the shared folder: another replica reads them; Redis holds only
    small state, so a few HD clips cannot fill the memory that holds every tenant's styles."""
    from service.stores import VideoJob

    here, there = make_jobs(), make_jobs()  # two replicas
    here.put(VideoJob("j", state="running"))
    blob = bytes(range(256)) * 9000
    src = tmp_path / "clip"
    src.write_bytes(blob)
    here.put_file("j", "input", src)
    out = here.work_path("j", ".mp4.part")
    out.write_bytes(blob[::-1])
    here.keep_result("j", out)
    assert not src.exists() and not out.exists()
    assert there.local_file("j", "input").read_bytes() == blob and there.local_file("j", "nothing") is None
    assert there.result_size("j") == len(blob)
    if here.backend == "redis":
        sizes = {k: here.client.memory_usage(k) for k in here.client.scan_iter("*")}
        assert sizes and max(sizes.values()) < 16_384, sizes
    here.drop_files("j")
    assert there.local_file("j", "input") is None and here.get("j") is not None and there.result_size("j")


def test_leases_hand_each_unit_to_one_replica_in_order(make_jobs):
    from service.segments import TRACK, Leases, new_units
    from service.stores import VideoJob

    store = make_jobs()
    job = VideoJob("j", state="queued")
    store.put(job)
    store.put_units("j", new_units(2, track=True))
    a, b = Leases(store, "a", 60), Leases(store, "b", 60)
    t, s0 = a.claim(job), b.claim(job)
    assert (t.name, s0.name) == (TRACK, "s0")
    assert a.claim(job) is None  # s1 waits for the track, join for every segment
    assert a.finish(t) and a.claim(job).name == "s1"
    s0 = b.renew(s0, 5, 2.0)
    assert s0 is not None and b.read("j")[1]["s0"].frames == 5
    assert b.finish(s0, 8) and not b.finish(s0, 8)  # done once: the old value is gone
    assert a.claim(job) is None  # s1 is still a's


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_learns_it(make_jobs):
    from service.segments import JOIN, Leases, new_units
    from service.stores import VideoJob

    store = make_jobs()
    job = VideoJob("k", state="queued")
    store.put(job)
    store.put_units("k", new_units(1, track=False))
    slow, other = Leases(store, "slow", -1), Leases(store, "other", 60)  # slow's leases lapse at once
    mine = slow.claim(job)
    taken = other.claim(job)
    assert mine.name == taken.name == "s0"
    assert slow.renew(mine, 1, 1.0) is None and not slow.finish(mine)  # taken over: slow stops
    assert other.finish(taken, 8) and other.claim(job).name == JOIN
    back = Leases(store, "x", 60)
    assert back.claim(job) is None  # join is leased; s0 is done and never handed out again
    store.put_units("m", new_units(1, track=False))
    store.put(VideoJob("m", state="queued"))
    held = back.claim(VideoJob("m"))
    back.release(held)
    assert other.claim(VideoJob("m")).name == "s0"  # handed back: taken at once


def test_a_tenants_job_limit_holds_when_replicas_accept_at_once(make_jobs):
    """Eight replicas' threads record a job of one tenant at the same moment, with a limit of 2:
    the count and the write are one store operation, so exactly two get in."""
    from service.stores import VideoJob

    stores = [make_jobs() for _ in range(8)]
    go = threading.Barrier(len(stores))
    accepted = []

    def submit(i: int) -> None:
        go.wait()
        if stores[i].put(VideoJob(f"job{i}", tenant="acme", state="queued", created=float(i)), limit=2):
            accepted.append(i)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 2, accepted
    assert stores[0].put(VideoJob("other", tenant="beta", state="queued"), limit=2)  # another tenant's own count
    done = stores[0].get(f"job{accepted[0]}")
    stores[0].update(VideoJob(done.id, tenant="acme", state="done"))
    assert stores[0].put(VideoJob("again", tenant="acme", state="queued"), limit=2)  # a finished one frees a place


def test_a_job_expires_from_its_end_never_while_queued_or_running(make_jobs):
    from service.stores import VideoJob

    store = make_jobs(ttl=1)
    store.put(VideoJob("q", state="queued"))
    store.put(VideoJob("r", state="queued"))
    assert store.update(VideoJob("r", state="running"))
    time.sleep(1.3)
    assert store.get("q") is not None and store.get("r") is not None and sorted(store.active()) == ["q", "r"]
    assert store.update(VideoJob("r", state="done"))
    time.sleep(1.3)
    assert store.get("r") is None and store.get("q") is not None and store.active() == ["q"]


def test_a_unit_that_keeps_failing_is_poisoned_and_a_stalled_holder_is_fenced(make_jobs):
    from service.segments import Leases, Poisoned, new_units
    from service.stores import VideoJob

    store = make_jobs()
    job = VideoJob("p", state="queued")
    store.put(job)
    store.put_units("p", new_units(1, track=False))
    here, stalled = Leases(store, "here", 60, max_failures=3), Leases(store, "stalled", -1, max_failures=3)
    old = stalled.claim(job)  # its lease lapses at once: as a replica that hangs, or dies, on the unit
    taken = here.claim(job)
    assert (old.unit.token, taken.unit.token) == (1, 2) and taken.unit.failures == 1
    assert "stopped without finishing" in taken.unit.error
    assert not stalled.finish(old, 8) and stalled.renew(old, 8, 1.0) is None  # fenced: its token is stale
    here.fail(taken, "RuntimeError: frame 5")
    again = here.claim(job)
    assert (again.unit.token, again.unit.failures, again.unit.error) == (3, 2, "RuntimeError: frame 5")
    here.fail(again, "RuntimeError: frame 5")
    assert here.claim(job) == Poisoned("s0", 3, "RuntimeError: frame 5")  # not taken a fourth time
