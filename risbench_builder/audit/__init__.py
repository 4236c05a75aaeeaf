"""Audit of a finished dataset's masks (imported RRSIS-D, RefSegRS, RISBench, Hub copies): the
defect checks (:mod:`.findings`) and the report they make (:mod:`.report`)."""
