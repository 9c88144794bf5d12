"""Talking to Zoho: endpoints, OAuth tokens, the HTTP client and its credit meter, metadata."""
