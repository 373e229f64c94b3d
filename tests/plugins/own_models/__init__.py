"""A researcher's own model package, outside rdflow (tests/test_own_codec.py names it in a study
with ``kind: compressai_model``, ``python_path: tests/plugins``)."""
