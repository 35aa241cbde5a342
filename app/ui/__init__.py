"""PyQt5 user interface. Imports no torch/backend code: it talks to the pipeline through app.types and signals."""
