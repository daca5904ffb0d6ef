"""What may be added to a signed PDF and still count as "annotations added after signing".

pyhanko's default difference policy explains signature fields, form filling, metadata and
validation data added after a signature, but not other annotations: to it, a stamp or a
note added to a page is an unexplained change. This rule explains exactly that case:
an existing page whose dictionary changed only in ``/Annots``, which lost no annotation
and gained annotations that are new objects and not form widgets; everything new those
annotations reference (appearance streams, fonts) comes with them. Anything else stays
unexplained, so a change of page content is still reported as a change of content.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import HistoricalResolver
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    ModificationLevel,
    QualifiedWhitelistRule,
    ReferenceUpdate,
    StandardDiffPolicy,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.commons import compare_dicts

# Page tree depth and objects per new annotation followed at most.
MAX_TREE_DEPTH = 32
MAX_NEW_OBJECTS = 10_000


def _page_refs(resolver: HistoricalResolver) -> list[generic.Reference]:
    refs: list[generic.Reference] = []

    def walk(node_ref: generic.IndirectObject, depth: int) -> None:
        if depth > MAX_TREE_DEPTH:
            raise SuspiciousModification("page tree too deep")
        node = node_ref.get_object()
        if node.get("/Type") == "/Pages":
            for kid in node.raw_get("/Kids").get_object():
                walk(kid, depth + 1)
        else:
            refs.append(node_ref.reference)

    walk(resolver.root.raw_get("/Pages"), 0)
    return refs


def _annot_refs(page: generic.DictionaryObject) -> list[generic.Reference]:
    try:
        annots = page.raw_get("/Annots")
    except KeyError:
        return []
    return [
        item.reference for item in annots.get_object() if isinstance(item, generic.IndirectObject)
    ]


def _existed(old: HistoricalResolver, ref: generic.Reference) -> bool:
    return old.reader.xrefs.get_historical_ref(ref, old.revision) is not None


def _new_objects(old: HistoricalResolver, start: generic.PdfObject) -> Iterator[generic.Reference]:
    """Every object reachable from ``start`` that did not exist in ``old``."""
    seen: set[generic.Reference] = set()
    stack: list[generic.PdfObject] = [start]
    while stack:
        if len(seen) > MAX_NEW_OBJECTS:
            raise SuspiciousModification("too many new objects in an annotation")
        item = stack.pop()
        if isinstance(item, generic.IndirectObject):
            ref = item.reference
            if ref in seen or _existed(old, ref):
                continue
            seen.add(ref)
            yield ref
            item = item.get_object()
        if isinstance(item, generic.DictionaryObject):
            stack.extend(item.raw_get(key) for key in item)
        elif isinstance(item, generic.ArrayObject):
            stack.extend(item.raw_get(i) for i in range(len(item)))


class AnnotationAdditionRule(QualifiedWhitelistRule):
    """New, non-widget annotations on existing pages: level ``ANNOTATIONS``."""

    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_pages, new_pages = _page_refs(old), _page_refs(new)
        if old_pages != new_pages:
            return
        for page_ref in new_pages:
            old_page, new_page = old(page_ref), new(page_ref)
            before, after = _annot_refs(old_page), _annot_refs(new_page)
            added = [ref for ref in after if ref not in set(before)]
            if not added or not set(before) <= set(after):
                continue
            try:
                compare_dicts(old_page, new_page, frozenset({"/Annots"}))
            except SuspiciousModification:
                continue
            annotations = [new(ref) for ref in added]
            if any(_existed(old, ref) for ref in added) or any(
                a.get("/Subtype") == "/Widget" for a in annotations
            ):
                continue
            yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(page_ref)
            raw = new_page.raw_get("/Annots")
            if isinstance(raw, generic.IndirectObject):
                yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(raw.reference)
            for ref in added:
                annotation = new(ref)
                yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(ref)
                for key in annotation:
                    if key in ("/P", "/Parent", "/Popup", "/IRT"):
                        continue
                    for fresh in _new_objects(old, annotation.raw_get(key)):
                        yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(fresh)


DIFF_POLICY = StandardDiffPolicy(
    global_rules=[*DEFAULT_DIFF_POLICY.global_rules, AnnotationAdditionRule()],
    form_rule=DEFAULT_DIFF_POLICY.form_rule,
)
