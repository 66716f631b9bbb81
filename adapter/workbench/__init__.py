"""The billing office's workbench: the review queue, a day with every number explained, and
audited decisions (a driver: Starlette pages over the service's store)."""
