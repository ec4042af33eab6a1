"""Cross-tenant isolation: B's questions asked of A's knowledge base never return B's chunks."""

from knowledge.documents import ParsedDocument, Section
from knowledge.service import KnowledgeService

CANARY_A = "CANARY-ALPHA-7Q2Z"
CANARY_B = "CANARY-BRAVO-9X4K"

TOPICS = [
    "shipping to Canada costs",
    "the refund arrives within",
    "the warranty lasts",
    "error code {c} means",
    "reset your password by",
    "the kettle heats to",
    "our phone line opens at",
    "the subscription renews",
    "gift cards expire after",
    "the grinder setting for espresso is",
]


def tenant_docs(canary: str, flavour: str) -> list[ParsedDocument]:
    docs = []
    for n, topic in enumerate(TOPICS):
        text = f"{topic.format(c=canary)} {flavour} {n}. Reference {canary}-{n}. Ask about {canary} anytime."
        docs.append(ParsedDocument(f"{flavour} {n}", f"{flavour}-{n}.md", [Section((flavour.title(),), text)]))
    return docs


def test_two_hundred_queries_from_b_asked_of_a_return_nothing_of_b(onnx_service: KnowledgeService) -> None:
    service = onnx_service
    service.create_kb("tenant-a")
    service.create_kb("tenant-b")
    for n, parsed in enumerate(tenant_docs(CANARY_A, "alpha")):
        service.ingest("tenant-a", f"a-{n}", parsed)
    for n, parsed in enumerate(tenant_docs(CANARY_B, "bravo")):
        service.ingest("tenant-b", f"b-{n}", parsed)

    # Queries copied from B's documents: their text, their canary, their chunk ids.
    b_texts = [chunk for parsed in tenant_docs(CANARY_B, "bravo") for chunk in (s.text for s in parsed.sections)]
    queries: list[str] = []
    for n in range(200):
        base = b_texts[n % len(b_texts)]
        variants = [base, CANARY_B, f"{CANARY_B}-{n % 10}", f"b-{n % 10}:0", base.split(".")[0], f"bravo {n}"]
        queries.append(variants[n % len(variants)])
    assert len(queries) == 200

    leaked = 0
    answered = 0
    for query in queries:
        hits = service.search("tenant-a", query, k=10)
        answered += bool(hits)
        for hit in hits:
            assert hit.document_id.startswith("a-")
            leaked += CANARY_B in hit.text or hit.document_id.startswith("b-")
    assert leaked == 0
    assert answered > 0  # A did answer some of them, from A's own documents

    # And the other way round the canary of B is there to be found.
    assert service.search("tenant-b", CANARY_B)[0].document_id.startswith("b-")
