"""Helpers shared by the test suites: CLI runner, source comparison, fake HTTP, fake Zoho, S3 server."""
