"""Visual QA of a build: one-triplet overlays (`risbench show`) and a static HTML report (`risbench report`)."""

from .overlay import render_triplet
from .records import TripletRecord, find_triplet, load_records
from .report import ReportOptions, ReportResult, write_report
from .show import show_triplet

__all__ = ["ReportOptions", "ReportResult", "TripletRecord", "find_triplet", "load_records", "render_triplet",
           "show_triplet", "write_report"]
