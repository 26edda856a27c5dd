"""What the server loads for the relevance features beside the search itself:
the duplicate classifier of the model bundle, the zero-shot attribute tagger
and the colour remover of "same style, any colour". Kept here so that the
server's bootstrap only calls ``load_relevance``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.duplicates.classifier import DuplicateClassifier, load_classifier
from lookalike.encoders.zero_shot import ZeroShotTagger
from lookalike.index.collection import Collection
from lookalike.service.colour_free import ColourFree
from lookalike.service.config import ServiceConfig
from lookalike.service.encoding import ModelEncoder


@dataclass(frozen=True)
class Relevance:
    classifier: DuplicateClassifier | None
    tagger: ZeroShotTagger | None
    colour_free: ColourFree


def load_relevance(config: ServiceConfig, encoder: ModelEncoder | None, collection: Collection) -> Relevance:
    """Raises ValueError naming the problem: zero-shot attributes enabled without
    a model that has the image and text towers in their space, or a collection
    whose schema (fixed when it was created) lacks the attributes the server
    writes itself (zero-shot ones, the duplicate flag)."""
    tagger = zero_shot_tagger(config, encoder)
    if tagger is not None:
        _check_schema(collection, config.zero_shot.schema(), "zero_shot")
    classifier = load_classifier(encoder.encoder.bundle) if encoder is not None else None
    if config.duplicates.flag_on_upsert:
        if classifier is None:
            raise ValueError("duplicates.flag_on_upsert is on but the model bundle has no duplicate classifier "
                             "(lookalike train duplicates)")
        _check_schema(collection, config.duplicates.flag_schema(), "duplicates.flag_on_upsert")
    return Relevance(classifier, tagger, ColourFree(encoder, config.same_style))


def zero_shot_tagger(config: ServiceConfig, encoder: ModelEncoder | None) -> ZeroShotTagger | None:
    """The tagger of [zero_shot] when enabled; ValueError when the model lacks
    the image and text towers in its space."""
    zero_shot = config.zero_shot
    if not zero_shot.enabled:
        return None
    space = zero_shot.space
    if encoder is None or space not in encoder.image_spaces or space not in encoder.text_spaces:
        raise ValueError(f"zero_shot is enabled but the model has no image and text towers writing into "
                         f"space '{space}' (zero_shot.space)")
    return ZeroShotTagger(zero_shot, lambda texts: encoder.encoder.encode_texts(list(texts))[space])


def _check_schema(collection: Collection, needed: dict[str, str], feature: str) -> None:
    wrong = {n: t for n, t in needed.items() if collection.schema.get(n) != t}
    if wrong:
        raise ValueError(f"{feature} is enabled but the collection's schema lacks {wrong} (it was created "
                         f"before {feature} was enabled): re-create the collection, or add them to [schema] "
                         "before the first start")
