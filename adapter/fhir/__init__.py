"""The FHIR format edge, no I/O: FHIR R4 JSON in (``parse`` and the readers it uses), FHIR R4 JSON
out (``build``), the write-back plan (``diff``), references and instants (``refs``), validation
against the ``fhir.resources.R4B`` models (``validate``). Never imports ``adapter.emr``,
``adapter.intake`` or a driver."""
