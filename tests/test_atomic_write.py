"""write_atomically: a file is replaced whole, even by writers racing on it."""

import threading

from lookalike.store.atomic import write_atomically


def test_racing_writers_leave_one_whole_file_and_no_tmp_files(tmp_path):
    path = tmp_path / "pointer.json"
    texts = [str(i) * 50_000 for i in range(8)]  # large enough for writes to interleave
    start = threading.Barrier(len(texts))
    errors = []

    def write(text):
        start.wait()
        try:
            for _ in range(20):
                write_atomically(path, text)
        except OSError as e:  # e.g. a rename of a tmp file another writer already renamed
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointer.json"]


def test_a_failed_write_leaves_the_old_file_and_no_tmp_file(tmp_path):
    path = tmp_path / "pointer.json"
    write_atomically(path, "old")
    try:
        write_atomically(path, "\ud800")  # a lone surrogate cannot be encoded as UTF-8
    except UnicodeEncodeError:
        pass
    else:
        raise AssertionError("an unencodable text was written")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointer.json"]
