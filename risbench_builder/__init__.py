"""risbench-builder: build referring remote-sensing segmentation datasets the RISBench way."""

__version__ = "0.1.0"
