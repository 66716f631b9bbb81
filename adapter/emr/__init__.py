"""The EMR connection: the FHIR REST client, its authentication, the adapter's Subscriptions and the
write-back's reads. Never imports ``adapter.intake`` or the drivers."""
