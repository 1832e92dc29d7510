"""The call list, the query store, the PDF report and its plots."""
