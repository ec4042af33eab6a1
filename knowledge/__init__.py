"""Knowledge bases: loaders, chunking, offline embeddings, the Chroma vector store, retrieval
and evaluation. It imports nothing of Parley's other packages."""
