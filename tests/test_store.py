import json

import pytest

from lmforge import LmforgeError, Store


def test_create_get_list_remove_round_trip(tmp_path):
    store = Store(tmp_path)
    with store.create("m1", step="import", config={"a": 1}) as draft:
        draft.model_dir.mkdir()
        (draft.model_dir / "weights.bin").write_bytes(b"\x00" * 10)
    art = store.get("m1")
    assert art.kind == "model" and art.step == "import" and art.parent is None
    assert art.meta["config"] == {"a": 1}
    assert "model/weights.bin" in art.meta["hashes"]
    assert art.meta["versions"]["torch"]
    assert "total_s" in art.meta["timings"]
    with store.create("m2", step="tune", parent="m1") as draft:
        (draft.path / "x").write_text("y")
    assert [a.name for a in store.list()] == ["m1", "m2"]
    assert store.get("m2").parent == "m1"
    store.remove("m1")
    assert [a.name for a in store.list()] == ["m2"]
    assert not (tmp_path / "m1").exists()


def test_failed_create_leaves_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError), store.create("broken", step="import") as draft:
        (draft.path / "half.safetensors").write_bytes(b"abc")
        raise RuntimeError("conversion died")
    assert not store.exists("broken")
    assert list(tmp_path.iterdir()) == []  # no temp folder left behind either


def test_existing_name_is_refused_unless_overwrite(tmp_path):
    store = Store(tmp_path)
    with store.create("m", step="import") as draft:
        (draft.path / "v").write_text("1")
    with pytest.raises(LmforgeError, match="already exists"), store.create("m", step="import"):
        pass
    with store.create("m", step="import", overwrite=True) as draft:
        (draft.path / "v").write_text("2")
    assert (store.get("m").path / "v").read_text() == "2"
    assert len(list(tmp_path.iterdir())) == 1


def test_failed_overwrite_keeps_the_old_artifact(tmp_path):
    store = Store(tmp_path)
    with store.create("m", step="import") as draft:
        (draft.path / "v").write_text("old")
    with pytest.raises(ValueError), store.create("m", step="import", overwrite=True) as draft:
        (draft.path / "v").write_text("new")
        raise ValueError("boom")
    assert (store.get("m").path / "v").read_text() == "old"


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", ".hidden", "x" * 101, "sp ace"])
def test_bad_names_are_rejected(tmp_path, bad):
    with pytest.raises(LmforgeError, match="invalid artifact name"):
        Store(tmp_path).path(bad)


def test_unknown_artifact_has_a_clear_error(tmp_path):
    with pytest.raises(LmforgeError, match="no artifact named 'nope'.*models list"):
        Store(tmp_path).get("nope")


def test_default_root_follows_lmforge_home(lmforge_home):
    assert Store().root == lmforge_home / "store"


def test_update_meta_is_atomic_json(tmp_path):
    store = Store(tmp_path)
    with store.create("m", step="import") as draft:
        (draft.path / "v").write_text("1")
    store.update_meta("m", note="hi")
    data = json.loads((tmp_path / "m" / "artifact.json").read_text())
    assert data["note"] == "hi" and data["name"] == "m"
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_every_artifact_records_its_energy_with_how_it_was_obtained(tmp_path):
    store = Store(tmp_path)
    with store.create("plain", step="import") as draft:
        sum(i * i for i in range(200_000))  # some CPU work to measure
        (draft.path / "x.txt").write_text("x")
    energy = store.get("plain").meta["energy"]
    assert energy["method"] in ("nvml", "rapl", "estimated") and energy["joules"] > 0
    assert energy["note"]
    with store.create("own", step="tune") as draft:  # a step's own reading is kept
        draft.meta["energy"] = {"joules": 1.0, "method": "estimated", "note": "the step's"}
    assert store.get("own").meta["energy"]["note"] == "the step's"


# -- temporary folders left by a writer that died ------------------------------------------

WRITER = """
import sys
from lmforge.store import Store

with Store(sys.argv[1]).create("held", step="import") as draft:
    (draft.path / "part").write_text("being written")
    print(draft.path, flush=True)
    sys.stdin.readline()  # hold the draft open until the test says so
"""


def age(path, seconds: float = 3600) -> None:
    """Set `path`'s modification time `seconds` into the past, as if written that long ago."""
    import os
    import time

    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_folder_held_by_a_live_writer_survives_the_cleanup(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    store = Store(tmp_path)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        held = Path(writer.stdout.readline().strip())
        assert held.parent == tmp_path and held.name.startswith(".tmp-held-")
        age(held)  # old enough to go, were it abandoned: only the lock keeps it
        assert store.remove_stale() == []
        with store.create("other", step="import") as draft:  # a write cleans up too
            (draft.path / "v").write_text("1")
        assert (held / "part").read_text() == "being written"
        writer.communicate("go\n", timeout=60)
    finally:
        writer.kill()
    assert writer.returncode == 0
    assert set(store.get("held").meta["hashes"]) == {"part"}  # the lock left nothing inside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held", "other"]


def test_a_stale_unlocked_folder_goes_on_the_next_write_and_a_fresh_one_stays(tmp_path):
    store = Store(tmp_path)
    stale = tmp_path / ".tmp-dead-abc123"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "weights.bin").write_bytes(b"\x00" * 10)
    age(stale)
    fresh = tmp_path / ".tmp-starting-def456"  # its writer may not have locked it yet
    fresh.mkdir()
    with store.create("m", step="import") as draft:
        (draft.path / "v").write_text("1")
    assert not stale.exists()
    assert fresh.is_dir()
    age(fresh)
    assert store.remove_stale() == [fresh]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
