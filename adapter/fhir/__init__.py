"""The FHIR edge: FHIR R4 JSON in (``parse``), FHIR R4 JSON out (``build``), validation against the
``fhir.resources.R4B`` models (``validate``). Never imports ``adapter.intake``."""
