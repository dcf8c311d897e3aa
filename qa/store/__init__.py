"""The index on disk: embeddings, FAISS vectors, BM25, generations, build and load."""
