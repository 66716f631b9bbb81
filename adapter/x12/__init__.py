"""The X12 edge: a day's decision as an 837P professional claim, 005010X222A1
(``domain.md`` §8). Written here (x12sdk writes only X222A2); every file the tests produce is
validated by ``pyx12`` against the X222A1 map."""
