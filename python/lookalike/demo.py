"""A catalog to try lookalike with, made from the sample photos the project
already uses (lookalike.sample_photos: a portrait, a gift box, a temple, a
flower, which matplotlib and scikit-learn ship): each photo whole, and crops
of it standing in for related products, with a title, a category, a price and
stock. `lookalike demo` serves it with the console; the console's browser
tests search it."""

from __future__ import annotations

import io

import numpy as np

from lookalike.sample_photos import open_photos, random_crop, sample_photos
from lookalike.v1 import search_pb2

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool"}
# Per sample photo (in sample_photos() order): the theme of its products, and their kinds.
THEMES = (("navy uniform", ("jacket", "portrait", "cap", "coat", "badge", "poster")),
          ("blue gift", ("box", "wrapping", "bag", "ribbon", "card", "box set")),
          ("temple", ("poster", "postcard", "mug", "puzzle", "calendar", "print")),
          ("flower print", ("dress", "scarf", "tote", "blouse", "skirt", "cushion")))
SIDE = 256


def _jpeg(photo) -> bytes:
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=88)
    return out.getvalue()


def demo_products(seed: int = 0) -> list[search_pb2.Product]:
    """24 products, ids 1..24: per photo, the photo itself (resized) then five crops."""
    rng = np.random.default_rng(seed)
    products = []
    for photo, (theme, kinds) in zip(open_photos(sample_photos()), THEMES):
        for j, kind in enumerate(kinds):
            if j == 0:
                scale = SIDE / min(photo.size)
                image = photo.resize((round(photo.width * scale), round(photo.height * scale)))
            else:
                image = random_crop(photo, rng, SIDE)
            price = round(float(rng.uniform(5, 150)), 2)
            products.append(search_pb2.Product(
                id=len(products) + 1, image=_jpeg(image), title=f"{theme} {kind}", attributes={
                    "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[kind])),
                    "price": search_pb2.AttributeValue(number=price),
                    "in_stock": search_pb2.AttributeValue(flag=bool(rng.random() < 0.8))}))
    return products
