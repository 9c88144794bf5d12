"""Talking to Zoho: endpoints, OAuth tokens, the HTTP client and its credit meter, Zoho's answers
mapped to errors (responses), metadata, and Zoho's rules: limits and prices (limits), scopes."""
