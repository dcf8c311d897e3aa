"""Thin shells over the engine: server, REST, Gradio UI, rendering, feedback, live reload."""
