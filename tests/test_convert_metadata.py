"""A hit's metadata written in place (convert.metadata_into) is the message the
record and attributes make, for every attribute type; attributes the schema
does not name are left out."""

from lookalike.service import convert
from lookalike.store.catalog import ProductRecord
from lookalike.v1 import search_pb2

SCHEMA = {"category": "keyword", "tags": "keyword", "price": "numeric", "in_stock": "bool", "added": "timestamp",
          "empty": "keyword"}


def test_written_in_place_as_built_whole():
    record = ProductRecord(7, "red dress", "s3://bucket/7.jpg", "ab" * 32)
    attributes = {"category": "dresses", "tags": ["red", "summer"], "price": 0.0, "in_stock": False, "added": 0,
                  "empty": [], "colour": "red"}
    expected = search_pb2.ProductMetadata(
        title="red dress", image_uri="s3://bucket/7.jpg", image_sha256="ab" * 32, attributes={
            "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=["dresses"])),
            "tags": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=["red", "summer"])),
            "price": search_pb2.AttributeValue(number=0.0),
            "in_stock": search_pb2.AttributeValue(flag=False),
            "added": search_pb2.AttributeValue(timestamp=0),
            "empty": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[]))})
    response = search_pb2.SearchResponse()
    hit = response.hits.add(id=7, score=0.5)
    convert.metadata_into(hit.metadata, record, attributes, SCHEMA)
    assert hit.metadata == expected
    assert hit.metadata.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    # Zero values and an empty keyword list are set, not left out.
    assert [hit.metadata.attributes[name].WhichOneof("value") for name in ("price", "in_stock", "added", "empty")] \
        == ["number", "flag", "timestamp", "keywords"]
    assert "colour" not in hit.metadata.attributes


def test_a_product_without_anything_still_has_its_metadata():
    hit = search_pb2.Hit(id=1)
    convert.metadata_into(hit.metadata, ProductRecord(1, "", "", ""), {}, SCHEMA)
    assert hit.HasField("metadata")
