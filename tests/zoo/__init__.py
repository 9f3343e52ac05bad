"""Tiny models of every super-resolution architecture spandrel loads, one module per adapter
family (``CASES``), for tests/test_spandrel_zoo.py."""
