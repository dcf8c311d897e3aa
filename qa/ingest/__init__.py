"""Files to documents, sentences, token windows and chunks with exact offsets."""
