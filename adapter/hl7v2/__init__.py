"""The HL7 v2 edge: a day's decision as DFT^P03 (v2.5.1) detail financial transactions, built
with ``hl7apy`` (``domain.md`` §8)."""
