"""The service with a model bundle: photo, text and hybrid queries, products sent
as photos, per-stage timings, and broken uploads. The bundle is the tiny random
CLIP the exporter tests build (tests/tiny_clip.py), so similarities carry no
meaning beyond "the same picture is nearest to itself"."""

import io
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from PIL import Image

from lookalike.client import Client, Product
from lookalike.encoders import Encoder
from lookalike.service.config import Limits, ServiceConfig
from lookalike.service.server import Server

N = 24


def picture(i: int) -> bytes:
    """A distinct little photo: stripes whose colour and width depend on i."""
    rng = np.random.default_rng(i)
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    width = 2 + i % 7
    colour = rng.integers(0, 256, 3)
    for x in range(0, 64, 2 * width):
        pixels[:, x:x + width] = colour
    pixels[: 8 + i % 40] += np.uint8(i * 5 % 256)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG" if i % 2 else "PNG")
    return out.getvalue()


def big_blank_png() -> bytes:
    """Few bytes, many pixels: what a decompression bomb looks like, in small."""
    out = io.BytesIO()
    Image.new("RGB", (400, 400)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def served(tiny_clip_bundle, tmp_path_factory):
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path_factory.mktemp("encoded")),
                           model=str(tiny_clip_bundle), schema={"category": "keyword"},
                           limits=Limits(max_image_bytes=200_000, max_image_pixels=100_000))
    server = Server(config)
    server.start()
    with Client(server.address) as client:
        products = [Product(id=i, image=picture(i), title=f"red dress {i}") for i in range(N)]
        reply = client.upsert(products)
        assert [r.error for r in reply.results] == [""] * N
        yield server, client
    server.stop(grace=1)


def test_spaces_come_from_the_model(served):
    _, client = served
    stats = client.stats()
    assert stats.model_id.startswith("tiny-clip@")
    assert [(s.name, s.has_image_encoder, s.has_text_encoder) for s in stats.spaces] == [("joint", True, True)]
    assert stats.products == N


def test_a_photo_finds_its_own_product_with_stage_timings(served):
    _, client = served
    for i in (0, 5, 17):
        reply = client.search(image=picture(i), k=3)
        assert reply.hits[0].id == i
        assert reply.hits[0].score == pytest.approx(1.0, abs=2e-2)
    t = reply.timings
    assert t.decode_us > 0 and t.preprocess_us > 0 and t.encode_us > 0 and t.search_us > 0
    assert t.total_us >= t.decode_us + t.preprocess_us + t.encode_us


def test_text_and_hybrid_queries_use_the_towers(served):
    server, client = served
    words = "red dress 3"
    expected = server.encoder.encoder.encode_texts([words])["joint"][0]
    stored = np.stack([server.collection.vectors("joint", [i])[0] for i in range(N)])
    best = int(np.argmax(stored @ expected))
    assert client.search(text=words, k=1).hits[0].id == best

    image = Encoder(server.config.model).encode_images([picture(4)])["joint"][0]
    mix = (image + expected) / np.linalg.norm(image + expected)
    reply = client.search(image=picture(4), text=words, k=N)
    assert [h.id for h in reply.hits][:3] == np.argsort(-(stored @ mix))[:3].tolist()


def test_a_hybrid_query_runs_its_two_towers_at_once(served, monkeypatch):
    """The text tower's run cannot end before the image tower's run has begun:
    it gets there only if the query sends its image to the image tower while
    its text is still with the text tower (encoded one after the other, the
    text run would wait alone until its bound and report it)."""
    server, client = served
    encoder = server.encoder.encoder
    image_began = threading.Event()
    seen = []
    encode_texts, encode_pixels = encoder.encode_texts, encoder.encode_pixels

    def text_run(texts):
        seen.append(image_began.wait(10))
        return encode_texts(texts)

    def image_run(pixels):
        image_began.set()
        return encode_pixels(pixels)

    monkeypatch.setattr(encoder, "encode_texts", text_run)
    monkeypatch.setattr(encoder, "encode_pixels", image_run)
    reply = client.search(image=picture(4), text="red dress 3", k=1)
    assert reply.hits and seen == [True]


def test_concurrent_photo_queries_are_batched(served):
    server, client = served
    before = server.encoder._images.batches
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        top = list(pool.map(lambda i: client.search(image=picture(i), k=1).hits[0].id, range(16)))
    assert top == list(range(16))
    assert server.encoder._images.batches - before <= 16  # never more runs than queries


@pytest.mark.parametrize(
    "image, code, message",
    [
        (b"not an image at all", grpc.StatusCode.INVALID_ARGUMENT, "query.image"),
        (picture(1)[: len(picture(1)) // 2], grpc.StatusCode.INVALID_ARGUMENT, "query.image"),
        (b"\xff" * 300_000, grpc.StatusCode.INVALID_ARGUMENT, "300000 bytes, at most 200000"),
        (big_blank_png(), grpc.StatusCode.INVALID_ARGUMENT, "400x400 = 160000 pixels, the limit is 100000"),
    ],
)
def test_broken_uploads_get_a_status_that_names_the_problem(served, image, code, message):
    _, client = served
    with pytest.raises(grpc.RpcError) as caught:
        client.search(image=image, k=1)
    assert caught.value.code() == code and message in caught.value.details()


def test_a_product_with_a_broken_photo_fails_alone(served):
    _, client = served
    reply = client.upsert([Product(id=100, image=b"garbage"), Product(id=101, image=picture(101))])
    assert reply.results[0].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "products[0].image" in reply.results[0].error
    assert reply.results[1].status_code == 0
    assert client.search(image=picture(101), k=1).hits[0].id == 101


def test_a_product_with_only_a_title_is_encoded_from_it(served):
    server, client = served
    assert client.upsert([Product(id=200, title="blue shoes")]).results[0].status_code == 0
    expected = server.encoder.encoder.encode_texts(["blue shoes"])["joint"][0]
    np.testing.assert_allclose(server.collection.vectors("joint", [200])[0], expected, atol=2e-2)


def test_ingest_a_folder_of_photos_from_the_command_line(served, tmp_path):
    server, client = served
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.{'jpg' if i % 2 else 'png'}").write_bytes(picture(300 + i))
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", str(folder), "--address", server.address],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 products stored, 0 failed" in done.stderr
    # A folder's products are numbered by position; id 1 was replaced by p1.jpg.
    reply = client.search(image=picture(301), k=1, with_metadata=True)
    assert reply.hits[0].id == 1 and reply.hits[0].metadata.title == "p1"


def test_ingest_a_csv_manifest_with_attributes(served, tmp_path):
    server, client = served
    for i in range(2):
        (tmp_path / f"c{i}.png").write_bytes(picture(400 + i))
    (tmp_path / "catalog.csv").write_text("id,image,title,category\n"
                                          "700,c0.png,green bag,bags|leather\n"
                                          "701,c1.png,blue bag,\n")
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", str(tmp_path / "catalog.csv"),
                           "--address", server.address], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = {p.id: p for p in client.get([700, 701]).products}
    assert list(got[700].metadata.attributes["category"].keywords.values) == ["bags", "leather"]
    assert got[700].metadata.title == "green bag" and "category" not in got[701].metadata.attributes


def test_a_config_without_spaces_or_model_is_refused(tmp_path):
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="model build-default"):
        server.start()


def test_a_products_image_is_kept_under_its_digest_until_nothing_needs_it(served):
    import hashlib
    from pathlib import Path

    server, client = served
    first, second = picture(500), picture(501)
    assert client.upsert([Product(id=500, image=first)]).results[0].status_code == 0
    digest = hashlib.sha256(first).hexdigest()
    assert client.get([500]).products[0].metadata.image_sha256 == digest
    blob = Path(server.config.data_dir) / "blobs" / digest[:2] / digest[2:4] / digest
    assert blob.read_bytes() == first

    assert client.upsert([Product(id=500, image=second)]).results[0].status_code == 0
    server.store.snapshot()  # the first image is now named by nothing: not the catalog, not the log after it
    server.store.sweep_blobs()
    assert not blob.exists()
    assert server.store.blobs.read(client.get([500]).products[0].metadata.image_sha256) == second


def test_an_image_that_cannot_be_stored_fails_its_product_before_anything_is_logged(served, monkeypatch):
    import errno

    server, client = served

    def disk_full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    logged = server.store.applied_seq
    monkeypatch.setattr(server.store.blobs, "put", disk_full)
    reply = client.upsert([Product(id=600, image=picture(600)), Product(id=601, title="blue shoes")])
    assert reply.results[0].status_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "cannot store the image (No space left on device)" in reply.results[0].error
    assert reply.results[1].status_code == 0  # a product without an image needs no blob
    assert server.store.applied_seq == logged + 1 and list(client.get([600]).missing_ids) == [600]


def test_ingest_sends_a_repeated_id_after_the_call_in_flight_that_holds_it(served, tmp_path):
    # Two calls are in flight at once; the third row repeats the first one's id
    # and must still win, as when the rows are sent one by one.
    from lookalike.ingest import ingest

    server, client = served
    manifest = tmp_path / "repeated.csv"
    manifest.write_text("id,title\n700,first\n701,other\n700,second\n")
    stored, failed = ingest(client, manifest, batch=1, progress=io.StringIO())
    assert (stored, failed) == (3, [])
    assert client.get([700]).products[0].metadata.title == "second"


def test_an_image_that_fails_to_decode_leaves_no_blob_after_a_sweep(served):
    # Its bytes are stored while the photos of its message encode, then left to the sweep.
    from lookalike.store.blobs import digest_of

    server, client = served
    broken = b"these bytes are not an image " * 8
    reply = client.upsert([Product(id=800, image=broken), Product(id=801, image=picture(801))])
    assert reply.results[0].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reply.results[1].status_code == 0
    server.store.snapshot()
    server.store.sweep_blobs()
    assert digest_of(broken) not in server.store.blobs
    assert client.get([801]).products[0].metadata.image_sha256 in server.store.blobs
