"""The photos of one Upsert message are decoded together and encoded in shared
batches: per-product results and stored vectors as when each photo is encoded
alone, in far fewer model runs. And Stats names the space each kind of query
without `using` goes to."""

import grpc
import numpy as np
import pytest

from lookalike.cli import main
from lookalike.client import Client, Product, packed
from lookalike.service.config import Limits, ServiceConfig, SpaceConfig
from lookalike.service.encoding import BatchingConfig, StageClock
from lookalike.service.errors import ServiceError
from lookalike.service.query_encoding import QueryEncoder
from lookalike.service.server import Server
from lookalike.store import records
from test_service_encoders import big_blank_png, picture

N = 20
BAD = 9  # a broken photo in the middle of the message


@pytest.fixture(scope="module")
def served(tiny_clip_bundle, tmp_path_factory):
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path_factory.mktemp("batched")),
                           model=str(tiny_clip_bundle),
                           limits=Limits(max_image_bytes=200_000, max_image_pixels=100_000))
    server = Server(config)
    server.start()
    with Client(server.address) as client:
        yield server, client
    server.stop(grace=1)


def one_by_one(server, image: bytes, where: str) -> dict[str, np.ndarray] | ServiceError:
    """What the single-image path (a photo query's) gives one photo."""
    try:
        return QueryEncoder(server.encoder, server.config.limits).encode_all("image", image, StageClock(), where)
    except ServiceError as e:
        return e


def test_a_message_of_photos_is_encoded_in_shared_batches_with_per_product_results(served):
    server, client = served
    images = [picture(100 + i) for i in range(N)]
    images[BAD] = picture(3)[:200]  # a truncated JPEG
    batcher = server.encoder._images
    before = batcher.batches
    reply = client.upsert([Product(id=1000 + i, image=image, title=f"shoe {i}") for i, image in enumerate(images)],
                          batch=N)
    runs = batcher.batches - before

    alone = [one_by_one(server, image, f"products[{i}].image") for i, image in enumerate(images)]
    assert isinstance(alone[BAD], ServiceError)
    assert [(r.id, r.status_code, r.error) for r in reply.results] == [
        (1000 + i, e.code.value[0], e.message) if isinstance(e, ServiceError) else (1000 + i, 0, "")
        for i, e in enumerate(alone)]
    assert "products[9].image: " in reply.results[BAD].error
    # 19 photos went through the model in a few runs (at most 16 a run), not 19 runs of one
    assert 2 <= runs <= 4
    good = [i for i in range(N) if i != BAD]
    stored = server.collection.vectors("joint", [1000 + i for i in good])
    expected = np.stack([alone[i]["joint"] for i in good])
    np.testing.assert_allclose(stored, expected, atol=1e-3)  # the index keeps float16: ~2.5e-4 steps near 0.5
    assert 1000 + BAD not in server.collection


def test_batches_run_side_by_side_keep_per_product_results_and_log_each_product_once(tiny_clip_bundle, tmp_path):
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path), model=str(tiny_clip_bundle),
                           encoder_threads=1, batching=BatchingConfig(max_batch=4, runners=2))
    server = Server(config)
    server.start()
    try:
        images = [picture(300 + i) for i in range(N)]
        images[BAD] = picture(3)[:200]  # a truncated JPEG
        logged_before = server.store.logged_seq
        with Client(server.address) as client:
            reply = client.upsert([Product(id=3000 + i, image=image) for i, image in enumerate(images)], batch=N)
        assert [r.id for r in reply.results] == [3000 + i for i in range(N)]
        assert [i for i, r in enumerate(reply.results) if r.status_code] == [BAD]
        assert reply.results[BAD].error.startswith(f"products[{BAD}].image: ")
        good = [i for i in range(N) if i != BAD]
        alone = [one_by_one(server, images[i], f"products[{i}].image") for i in good]
        np.testing.assert_allclose(server.collection.vectors("joint", [3000 + i for i in good]),
                                   np.stack([vectors["joint"] for vectors in alone]), atol=1e-3)
        logged = [records.decode(r.payload) for r in server.store._wal.records(after=logged_before)]
        assert [batch.ids.tolist() for batch in logged] == [[3000 + i for i in good]]  # one record, each product once
    finally:
        server.stop(grace=1)


def test_checks_before_the_photo_keep_their_order_and_messages(served):
    _, client = served
    reply = client.upsert([
        Product(id=-1, image=b"not an image"),                      # the id is checked first
        Product(id=2001, image=b"\xff" * 300_000),                  # too many bytes: never decoded
        Product(id=2002, image=big_blank_png()),                    # too many pixels
        Product(id=2003, image=picture(7), vectors={"nope": packed(np.ones(4))}),  # the spaces before the photo
        Product(id=2004, image=picture(8)),
    ])
    assert [r.id for r in reply.results] == [-1, 2001, 2002, 2003, 2004]
    assert (reply.results[4].status_code, reply.results[4].error) == (0, "")
    errors = [r.error for r in reply.results]
    assert errors[0] == "products[0]: id must be >= 0, got -1"
    assert errors[1] == "products[1].image: the image is 300000 bytes, at most 200000"
    assert errors[2].startswith("products[2].image: ") and "160000 pixels" in errors[2]
    assert errors[3] == "products[3]: unknown vector space(s) ['nope']"
    assert [r.status_code for r in reply.results[:4]] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 3 + [
        grpc.StatusCode.NOT_FOUND.value[0]]


def test_stats_names_the_space_of_each_query_kind(served, tiny_clip_bundle, tmp_path):
    _, client = served
    stats = client.stats()
    assert (stats.default_space, stats.image_query_space, stats.text_query_space) == ("joint", "joint", "joint")

    # A default space the model does not fill: image queries still go to the model's image space.
    dim = next(s.dim for s in stats.spaces if s.name == "joint")
    two = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "two"), model=str(tiny_clip_bundle),
                        spaces=(SpaceConfig("catalog", 4), SpaceConfig("joint", dim)), default_space="catalog")
    assert query_spaces(two) == ("catalog", "joint", "catalog")
    vectors_only = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "vectors"),
                                 spaces=(SpaceConfig("v", 4),))
    assert query_spaces(vectors_only) == ("v", "", "")


def query_spaces(config: ServiceConfig) -> tuple[str, str, str]:
    """Stats' default, image and text query spaces of a server of ``config``."""
    server = Server(config)
    server.start()
    try:
        with Client(server.address) as client:
            stats = client.stats()
    finally:
        server.stop(grace=1)
    return stats.default_space, stats.image_query_space, stats.text_query_space


def test_the_stats_command_prints_where_queries_go(served, capsys):
    server, _ = served
    assert main(["stats", "--address", server.address]) == 0
    out = capsys.readouterr().out
    assert "queries without --using: image -> joint, text -> joint, vector and product id -> joint" in out
    assert "joint" in out.splitlines()[-1] and "image+text" in out.splitlines()[-1]


@pytest.mark.parametrize("spinning", [False, True])
def test_the_encoder_threads_spin_only_when_configured(tiny_clip_bundle, tmp_path, spinning):
    (tmp_path / "server.toml").write_text(f'model = "{tiny_clip_bundle}"\n'
                                          + ("encoder_spinning = true\n" if spinning else ""))
    config = ServiceConfig.load(tmp_path / "server.toml", env={}, address="127.0.0.1:0",
                                data_dir=str(tmp_path / "data"))
    server = Server(config)
    server.start()
    try:
        options = server.encoder.encoder.session("image").get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
    finally:
        server.stop(grace=1)
