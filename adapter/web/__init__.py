"""The one HTTP front door: an ASGI application (Starlette) served by uvicorn, holding the
Subscription webhook, health and metrics (and, later, CDS Hooks and the review app)."""
